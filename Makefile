# Two commands a new user needs: `make demo` and `make test`. Both set everything up first.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
APT_PKGS := gcc-arm-none-eabi qemu-system-arm

.PHONY: setup sysdeps venv test demo bench bench-int16 bench-snn bench-subnets bench-farm patch-faults patch-faults-stm32 fuzz bench-patch-link clean

setup: sysdeps venv

# System packages: only when missing, only as root; otherwise say what is missing and go on
# (tests that need them skip with a reason).
sysdeps:
	@missing=""; \
	command -v arm-none-eabi-gcc >/dev/null || missing="$$missing gcc-arm-none-eabi"; \
	command -v qemu-system-arm >/dev/null || missing="$$missing qemu-system-arm"; \
	if [ -z "$$missing" ]; then echo "sysdeps: cross compiler and QEMU present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "sysdeps: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "sysdeps: missing$$missing (install: sudo apt-get install --no-install-recommends$$missing)"; fi

venv: $(STAMP)
$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[torch,test]'
	touch $(STAMP)

# pytest exit 5 (no tests collected) is not a failure of the setup.
test: setup
	$(BIN)/python -m pytest -q -ra tests; rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

demo: setup
	$(BIN)/python -m toolchain.demo

bench: setup
	$(BIN)/python -m toolchain.bench

# int16 vs int8 activations on two regression tasks. JSON: bench-results/int16_accuracy.json
bench-int16: setup
	$(BIN)/python tests/bench_int16_accuracy.py --json bench-results/int16_accuracy.json

# Spiking networks (issue #11): snnTorch MLP and conv net on digits, float / fixed point /
# device, instructions (portable, DSP), rate sweep, vs the int8 CNN. JSON: bench-results/snn_bench.json
bench-snn: setup
	$(BIN)/python -m toolchain.bench_snn

# Switchable subnets (issue #10): KWS and ResNet-8 with levels nested by |w| in one
# firmware each, instructions per level vs the dense DSP build, bit-exact with
# tflite-micro per level. JSON: bench-results/subnets_models_m4.json
bench-subnets: setup
	$(BIN)/python -m toolchain.subnets.bench_models --json bench-results/subnets_models_m4.json

# Parallel HIL (issue #13): the digits test set (x2, best of 3 rounds) sharded over N = 1, 2, 4 emulated
# boards, started locally and as places of a labgrid farm on 127.0.0.1 (coordinator +
# exporter). JSON: bench-results/farm_parallel.json
bench-farm: setup
	$(BIN)/python -m toolchain.bench_farm --json bench-results/farm_parallel.json

# Device patch fault campaign (issue #6): power cuts at every flash operation, link
# faults through a proxy, bad patches; on the host board and QEMU. JSON: build/patch-faults.json
patch-faults: setup
	$(BIN)/python -m toolchain.patch.campaign --json build/patch-faults.json

# The same campaign over the STM32F4 / STM32L4 flash controller models (issue #13):
# every flash operation of streaming + applying cut (every 2nd torn). JSON: build/patch-faults-stm32.json
patch-faults-stm32: setup
	$(BIN)/python -m toolchain.patch.campaign --stm32 --json build/patch-faults-stm32.json

# Protocol fuzzer (issue #15), long run: 1 M fuzz items per host board (host-asan too when
# present); no crash, no hang, a valid request answered after every batch. JSON: bench-results/proto_fuzz.json
fuzz: setup
	$(BIN)/python -m toolchain.patch.fuzz --frames 1000000 --json bench-results/proto_fuzz.json

# Patch streaming over a bad line (issue #15): 0 / 1e-4 / 1e-3 / 4e-3 per byte, cuts every 1.5 kB.
bench-patch-link: setup
	$(BIN)/python -m toolchain.patch.stream_bench --json bench-results/patch_stream_badline.json

clean:
	rm -rf build out .pytest_cache   # bench-results/ keeps the committed figures
