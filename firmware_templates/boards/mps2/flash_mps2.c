/* MPS2 backend of the NOR flash emulation (flash.h). The weight area lives in the
 * code memory (writable under QEMU, like a flash controller would make it). In test
 * builds a host file backs it through semihosting (SYS_OPEN/SEEK/WRITE persist
 * across a SIGKILL of QEMU): name it with QEMU `-append "--flash PATH"` (relative
 * to QEMU's working directory). Without one (or without semihosting) the area is
 * RAM-like: writes last until QEMU exits. */
#include <stdint.h>
#include "flash.h"
#include "mcu_util.h"
#include "cortexm.h"

#ifdef MCU_TEST_BUILD
static int32_t fl_handle = -1;

static int sh_write_at(uint32_t pos, const uint8_t *d, uint32_t n) {
    uint32_t a[3];
    a[0] = (uint32_t)fl_handle;
    a[1] = pos;
    if (cortexm_semihost(0x0Au /* SYS_SEEK */, a) != 0) return -1;
    a[1] = (uint32_t)(uintptr_t)d;
    a[2] = n;
    return cortexm_semihost(0x05u /* SYS_WRITE: returns bytes NOT written */, a) == 0 ? 0 : -1;
}

/* "--flash PATH" from the semihosting command line (QEMU: kernel path + -append). */
static int flash_path(char *buf, uint32_t cap) {
    static char cmd[256];
    uint32_t a[2], i = 0, n = 0;
    const char *key = "--flash";
    a[0] = (uint32_t)(uintptr_t)cmd;
    a[1] = sizeof cmd - 1u;
    if (cortexm_semihost(0x15u /* SYS_GET_CMDLINE */, a) != 0) return -1;
    cmd[a[1] < sizeof cmd ? a[1] : sizeof cmd - 1u] = 0;
    for (;;) {
        while (cmd[i] == ' ') i++;
        if (!cmd[i]) return -1;
        if (strlen(cmd + i) >= 8 && memcmp(cmd + i, key, 7) == 0 && cmd[i + 7] == ' ') {
            i += 8;
            while (cmd[i] == ' ') i++;
            while (cmd[i] && cmd[i] != ' ' && n + 1u < cap) buf[n++] = cmd[i++];
            buf[n] = 0;
            return n ? 0 : -1;
        }
        while (cmd[i] && cmd[i] != ' ') i++;
    }
}

int board_flash_open(uint8_t *area, uint32_t size, const uint8_t *trailer64) {
    static char path[200];
    uint32_t a[3];
    uint8_t t[64];
    if (flash_path(path, sizeof path) != 0) return -1;
    a[0] = (uint32_t)(uintptr_t)path;
    a[1] = 3u; /* "r+b" */
    a[2] = strlen(path);
    fl_handle = (int32_t)cortexm_semihost(0x01u /* SYS_OPEN */, a);
    if (fl_handle >= 0) {
        a[0] = (uint32_t)fl_handle;
        if (cortexm_semihost(0x0Cu /* SYS_FLEN */, a) == size + 64u) {
            a[1] = size;
            cortexm_semihost(0x0Au, a);
            a[1] = (uint32_t)(uintptr_t)t;
            a[2] = 64;
            if (cortexm_semihost(0x06u /* SYS_READ: returns bytes NOT read */, a) == 0 &&
                memcmp(t, trailer64, 64) == 0) {
                a[1] = 0;
                cortexm_semihost(0x0Au, a);
                a[1] = (uint32_t)(uintptr_t)area;
                a[2] = size;
                if (cortexm_semihost(0x06u, a) == 0) return 1;
            }
        }
        a[0] = (uint32_t)fl_handle;
        cortexm_semihost(0x02u /* SYS_CLOSE */, a);
    }
    a[0] = (uint32_t)(uintptr_t)path;
    a[1] = 7u; /* "w+b": create or truncate */
    a[2] = strlen(path);
    fl_handle = (int32_t)cortexm_semihost(0x01u, a);
    if (fl_handle < 0) return -1;
    if (sh_write_at(0, area, size) != 0 || sh_write_at(size, trailer64, 64) != 0) {
        fl_handle = -1;
        return -1;
    }
    return 0;
}

int board_flash_persist(uint32_t off, const uint8_t *data, uint32_t n) {
    if (fl_handle < 0) return 0;
    return sh_write_at(off, data, n);
}

void board_flash_die(void) {
    uint32_t args[2] = {0x20026u /* ADP_Stopped_ApplicationExit */, 99u};
    cortexm_semihost(0x20u /* SYS_EXIT_EXTENDED */, args);
    for (;;) {
    }
}
#else
int board_flash_open(uint8_t *area, uint32_t size, const uint8_t *trailer64) {
    (void)area;
    (void)size;
    (void)trailer64;
    return -1;
}
int board_flash_persist(uint32_t off, const uint8_t *data, uint32_t n) {
    (void)off;
    (void)data;
    (void)n;
    return 0;
}
void board_flash_die(void) {
    for (;;) {
    }
}
#endif
