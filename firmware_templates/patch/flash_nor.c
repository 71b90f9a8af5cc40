/* NOR flash semantics over a memory-mapped area and a board backing store (flash.h).
 * Order of every operation: check, persist to the backing store, then update memory. */
#include "flash.h"
#include "mcu_util.h"

flash_stats_t flash_stats;
static uint8_t *fl_area;
static uint32_t fl_size;
static uint32_t fault_left; /* 0 = disarmed */
static uint8_t fault_torn;

#define FL_TRAILER_MAGIC 0x4655434Du /* "MCUF" */

int flash_init(uint8_t *area, uint32_t size, const uint8_t *id) {
    uint8_t trailer[64];
    uint32_t i;
    fl_area = area;
    fl_size = size;
    memset(trailer, 0, sizeof trailer);
    trailer[0] = (uint8_t)FL_TRAILER_MAGIC;
    trailer[1] = (uint8_t)(FL_TRAILER_MAGIC >> 8);
    trailer[2] = (uint8_t)(FL_TRAILER_MAGIC >> 16);
    trailer[3] = (uint8_t)(FL_TRAILER_MAGIC >> 24);
    for (i = 0; i < 4; i++) trailer[4 + i] = (uint8_t)(size >> (8 * i));
    for (i = 0; i < 32; i++) trailer[8 + i] = id[i];
    return board_flash_open(area, size, trailer) == 1;
}

uint32_t flash_size(void) { return fl_size; }
const uint8_t *flash_ptr(uint32_t off) { return fl_area + off; }

int flash_read(uint32_t off, void *data, uint32_t n) {
    if (off > fl_size || n > fl_size - off) return FLASH_E_RANGE;
    memcpy(data, fl_area + off, n);
    return FLASH_OK;
}

int flash_readable(uint32_t off, uint32_t n) {
    return off <= fl_size && n <= fl_size - off;
}

int flash_erased(uint32_t off, uint32_t n) {
    const uint8_t *p = fl_area + off;
    if (off > fl_size || n > fl_size - off) return 0;
    while (n--)
        if (*p++ != 0xFFu) return 0;
    return 1;
}

void flash_set_fault(uint32_t n, uint8_t torn) {
#ifdef MCU_TEST_BUILD
    fault_left = n;
    fault_torn = torn;
#else
    (void)n;
    (void)torn;
#endif
}

/* Called before each operation; returns 1 if this operation is the one that dies. */
static int fault_hit(void) {
    if (!fault_left) return 0;
    return --fault_left == 0;
}

static const uint8_t ff_block[64] = {
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};

static int persist_ff(uint32_t off, uint32_t n) {
    while (n) {
        uint32_t k = n < sizeof ff_block ? n : (uint32_t)sizeof ff_block;
        if (board_flash_persist(off, ff_block, k) < 0) return -1;
        off += k;
        n -= k;
    }
    return 0;
}

int flash_erase_page(uint32_t off) {
    if (off >= fl_size || fl_size - off < MCU_FLASH_PAGE) return FLASH_E_RANGE;
    if (off % MCU_FLASH_PAGE) return FLASH_E_ALIGN;
    if (fault_hit()) {
        if (fault_torn) persist_ff(off, MCU_FLASH_PAGE / 2u); /* half-erased page */
        board_flash_die();
    }
    flash_stats.erases++;
    if (persist_ff(off, MCU_FLASH_PAGE) < 0) { flash_stats.errors++; return FLASH_E_IO; }
    memset(fl_area + off, 0xFF, MCU_FLASH_PAGE);
    return FLASH_OK;
}

int flash_program(uint32_t off, const void *data, uint32_t n) {
    const uint8_t *d = (const uint8_t *)data, *cur;
    uint32_t i;
    if (off > fl_size || n > fl_size - off) return FLASH_E_RANGE;
    cur = fl_area + off;
    for (i = 0; i < n; i++)
        if ((uint8_t)(cur[i] & d[i]) != d[i]) { flash_stats.refused++; return FLASH_E_ZERO_TO_ONE; }
    if (fault_hit()) {
        if (fault_torn) board_flash_persist(off, d, n / 2u); /* half-programmed */
        board_flash_die();
    }
    flash_stats.programs++;
    if (board_flash_persist(off, d, n) < 0) { flash_stats.errors++; return FLASH_E_IO; }
    memcpy(fl_area + off, d, n);
    return FLASH_OK;
}
