"""Flash a board through its labgrid place: the board TOML names the driver.

    [labgrid]
    flash_driver = "OpenOCDDriver"     # a labgrid BootstrapProtocol driver (has load())
    flash_args = { board_config = "board/st_nucleo_f4.cfg" }

The driver is bound to the place's resources as labgrid does for `labgrid-client`
(a Target with a RemotePlace over our coordinator session): OpenOCDDriver needs a
(Network)USBDebugger on the place, and runs openocd on the exporter host through
labgrid's SSH proxy. Boards without a [labgrid] flash driver (the emulated ones,
whose exporter runs QEMU with the firmware) are used as flashed."""
from __future__ import annotations

from pathlib import Path

from toolchain.farm import PlaceError, _quiet


def flash_driver(board) -> tuple[str | None, dict]:
    cfg = (getattr(board, "raw", None) or {}).get("labgrid") or {}
    return cfg.get("flash_driver"), dict(cfg.get("flash_args") or {})


def flash_through_place(lease, elf, board) -> None:
    name, args = flash_driver(board)
    if not name:
        raise PlaceError(f"board {board.name} has no [labgrid] flash_driver: the device on "
                         f"place {lease.place} must be flashed already")
    if not Path(elf).is_file():
        raise PlaceError(f"firmware {elf} does not exist")
    from labgrid import Target
    from labgrid.exceptions import NoSupplierFoundError, NoResourceFoundError
    from labgrid.factory import target_factory
    from labgrid.resource.remote import RemotePlace, RemotePlaceManager
    try:
        cls = target_factory.class_from_string(name)
    except (KeyError, ValueError, AttributeError):
        raise PlaceError(f"board {board.name}: [labgrid] flash_driver {name!r} is not a "
                         f"labgrid driver") from None
    if not hasattr(cls, "load"):
        raise PlaceError(f"board {board.name}: labgrid's {name} cannot load an image "
                         f"(not a BootstrapProtocol driver)")
    manager = RemotePlaceManager.get()
    manager.session, manager.loop = lease.session.s, lease.session.loop
    target = Target(lease.place)
    try:
        with _quiet():
            RemotePlace(target, name=lease.place)
            drv = cls(target, name=None, **args)
            target.activate(drv)
            drv.load(str(elf))
    except (NoSupplierFoundError, NoResourceFoundError) as e:
        need = ", ".join(sorted(next(iter(getattr(cls, "bindings", {}).values()), ()))) or "?"
        raise PlaceError(f"place {lease.place} has no resource for {name} (needs one of: "
                         f"{need}): {str(e).splitlines()[0][:160]}") from None
    except TypeError as e:
        raise PlaceError(f"board {board.name}: [labgrid] flash_args do not fit {name}: {e}") \
            from None
    except Exception as e:  # noqa: BLE001 - the flasher's own failure, as one line
        msg = (str(e).strip().splitlines() or [type(e).__name__])[-1][:200]
        raise PlaceError(f"flashing {elf} through place {lease.place} ({name}) failed: "
                         f"{msg}") from None
    finally:
        try:
            target.deactivate_all_drivers()
        except Exception:  # noqa: BLE001
            pass
