"""Host end of the model messages (0x20-0x3F, docs/protocol.md "Model messages").

    client = ModelClient(device.link())
    info = client.info()                   # ModelDeviceInfo: DeviceInfo + model descriptor
    out, count = client.infer(x.tobytes()) # count: instructions / cycles / ns (info.count_unit)
    client.layer_times()                   # [count per layer] of the last inference
    client.layer_output(3)                 # bytes of layer 3's output for the last input

Layer k is op k of the IR graph. layer_output re-sends the last input and runs the
model up to layer k (the arena reuses the input buffer, so the input is always
set again first)."""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from toolchain.errors import LinkError, NoModelError
from toolchain.link.link import DeviceError, DeviceInfo
from toolchain.link.protocol import Status

UNITS = {0: "ticks", 1: "instructions", 2: "cycles", 3: "ns"}


class ModelMsg(enum.IntEnum):
    """Model message types (firmware_templates/app/handlers_model.c)."""
    MODEL_INFO = 0x20
    MODEL_INPUT = 0x21        # stream
    MODEL_INVOKE = 0x22
    MODEL_OUTPUT = 0x23       # stream
    MODEL_INFER = 0x24
    MODEL_LAYER_TIMES = 0x25
    MODEL_LAYER_INFO = 0x26
    MODEL_RUN_TO = 0x27
    MODEL_LAYER_OUTPUT = 0x28  # stream
    MODEL_LEVEL = 0x29         # [u8 k] -> u8 active, u8 levels, levels x u16 sparsity


# Model descriptor versions this host reads: 1 (int8 I/O only), 2 (adds dtype 2 = int16,
# little endian on the wire; toolchain/codegen/generate.py writes 2 for 16x8 models).
DESC_VERSIONS = (1, 2)
DESC_DTYPES = {1: "int8", 2: "int16"}


@dataclass
class TensorDesc:
    shape: tuple
    dtype: str
    scale: float
    zero_point: int

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.size * (2 if self.dtype == "int16" else 1)


@dataclass
class ModelDeviceInfo(DeviceInfo):
    """DeviceInfo plus the model descriptor (MODEL_INFO)."""
    arena_size: int = 0
    num_layers: int = 0
    count_unit: str = ""
    inputs: list = field(default_factory=list)    # [TensorDesc]
    outputs: list = field(default_factory=list)

    @classmethod
    def parse_desc(cls, base: DeviceInfo, p: bytes) -> "ModelDeviceInfo":
        ver, unit, nl, arena, n_in, n_out, hl, _ = struct.unpack_from("<BBHIBBBB", p)
        if ver not in DESC_VERSIONS:
            raise LinkError(f"unknown model descriptor version {ver} (this host reads "
                            f"{', '.join(map(str, DESC_VERSIONS))}); rebuild the firmware "
                            "with this toolchain")
        off = 12
        h = p[off:off + hl].hex()
        off += hl
        tensors = []
        for _ in range(n_in + n_out):
            dt, rank = struct.unpack_from("<BB", p, off)
            off += 2
            shape = struct.unpack_from(f"<{rank}I", p, off)
            off += 4 * rank
            scale, zp = struct.unpack_from("<fi", p, off)
            off += 8
            if ver == 1 and dt != 1:
                raise LinkError(f"model descriptor version 1 with tensor dtype {dt}; "
                                "rebuild the firmware with this toolchain")
            tensors.append(TensorDesc(tuple(shape), DESC_DTYPES.get(dt, f"dtype{dt}"),
                                      float(scale), int(zp)))
        d = {k: getattr(base, k) for k in base.__dataclass_fields__}
        d["model_hash"] = d["model_hash"] or h
        return cls(**d, arena_size=arena, num_layers=nl, count_unit=UNITS.get(unit, "?"),
                   inputs=tensors[:n_in], outputs=tensors[n_in:])

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["inputs"] = [vars(t) | {"shape": list(t.shape)} for t in self.inputs]
        d["outputs"] = [vars(t) | {"shape": list(t.shape)} for t in self.outputs]
        return d


class ModelClient:
    def __init__(self, link, invoke_timeout: float = 60.0):
        self.link = link
        self.invoke_timeout = invoke_timeout
        self._info: ModelDeviceInfo | None = None
        self._last_input: bytes | None = None

    def _req(self, t, payload=b"", slow=False) -> bytes:
        try:
            return self.link.request(int(t), payload, timeout=(
                max(self.link.timeout, self.invoke_timeout) if slow else None))
        except DeviceError as e:
            if e.status == Status.NO_MODEL:
                raise NoModelError(f"device at {self.link.url} runs no model (firmware without "
                                "one); build it with: mcu build MODEL --board BOARD") from None
            raise

    def info(self, refresh: bool = False) -> ModelDeviceInfo:
        if self._info is None or refresh:
            base = self.link.info()
            if not base.has_model:
                raise NoModelError(f"device at {self.link.url} runs no model (firmware without "
                                "one); build it with: mcu build MODEL --board BOARD")
            self._info = ModelDeviceInfo.parse_desc(base, self._req(ModelMsg.MODEL_INFO))
        return self._info

    def level(self, k: int | None = None) -> tuple[int, list]:
        """Subnet level of the device: (active level, sparsity per level); with k, select
        level k first (answered at once, no flash write; holds until changed). An index
        out of range is a DeviceError BAD_ARG with the device unchanged; a firmware
        without subnet levels answers UNSUPPORTED (LinkError)."""
        if k is not None and not 0 <= int(k) <= 255:
            raise LinkError(f"subnet level {k} is out of range 0..255")
        try:
            p = self._req(ModelMsg.MODEL_LEVEL, b"" if k is None else bytes([int(k)]))
        except DeviceError as e:
            if e.status == Status.UNSUPPORTED:
                raise LinkError(f"the model on the device at {self.link.url} has no subnet "
                                "levels (build it from a subnet export: mcu build OUT/)") from None
            if e.status == Status.BAD_ARG and k is not None:
                raise LinkError(f"subnet level {k} is out of range for the model on the "
                                f"device (it has {len(self.level()[1])} levels); the device "
                                "kept its level") from None
            raise
        n = p[1]
        sp = [int.from_bytes(p[2 + 2 * i:4 + 2 * i], "little") / 10000 for i in range(n)]
        if k is not None:
            self._info = None          # the descriptor (output scales) is per level
        return p[0], sp

    @staticmethod
    def _count(p: bytes) -> int:
        lo, hi = struct.unpack_from("<II", p)
        return lo | (hi << 32)

    def infer(self, data: bytes) -> tuple[bytes, int]:
        """Run one inference: (output bytes, count in info().count_unit)."""
        info = self.info()
        data = bytes(data)
        if len(data) != info.model_input_size:
            raise LinkError(f"input is {len(data)} B, the model on the device takes "
                            f"{info.model_input_size} B")
        self._last_input = data
        cap = info.max_payload or 1024
        if len(data) <= cap and 9 + info.model_output_size <= cap:
            p = self._req(ModelMsg.MODEL_INFER, data, slow=True)
            return bytes(p[9:9 + info.model_output_size]), self._count(p)
        self.link.send_chunked(ModelMsg.MODEL_INPUT, data)
        p = self._req(ModelMsg.MODEL_INVOKE, slow=True)
        out = self.link.recv_chunked(ModelMsg.MODEL_OUTPUT)
        return out, self._count(p)

    def layer_times(self) -> list[int]:
        """Per-layer counts of the last run (layer k = op k of the IR graph)."""
        out: list[int] = []
        total = None
        while total is None or len(out) < total:
            p = self._req(ModelMsg.MODEL_LAYER_TIMES, struct.pack("<H", len(out)))
            total, first, unit, n = struct.unpack_from("<HHBB", p)
            if n == 0 and len(out) < total:
                raise LinkError("device returned no layer times")
            out += [self._count(p[6 + 8 * i:]) for i in range(n)]
        return out

    def layer_info(self, k: int) -> tuple[str, int]:
        """(name, output bytes) of layer k."""
        p = self._req(ModelMsg.MODEL_LAYER_INFO, struct.pack("<H", k))
        _, size = struct.unpack_from("<HI", p)
        return p[6:].decode(errors="replace"), size

    def layer_output(self, k: int, data: bytes | None = None) -> bytes:
        """Layer k's output for `data` (default: the last input given to infer)."""
        data = self._last_input if data is None else bytes(data)
        if data is None:
            raise LinkError("layer_output needs an input: call infer() first")
        self.link.send_chunked(ModelMsg.MODEL_INPUT, data)
        p = self._req(ModelMsg.MODEL_RUN_TO, struct.pack("<H", k), slow=True)
        size = struct.unpack_from("<I", p, 9)[0]
        out = self.link.recv_chunked(ModelMsg.MODEL_LAYER_OUTPUT)
        if len(out) != size:
            raise LinkError(f"layer {k}: got {len(out)} of {size} bytes")
        return out
