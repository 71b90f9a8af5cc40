/* flash.h over the STM32F4 flash controller (RM0090 §3 / RM0390 §3): the patch weight
 * area's erase unit (MCU_FLASH_PAGE) is one flash sector, 128 KB for the area's
 * sectors (5..11 on a 1 MB F405/F446; sectors 0..4 of 16/16/16/16/64 KB hold the code).
 * Program: 32-bit words (PSIZE x32, VDD >= 2.7 V) where a whole aligned word is
 * written, bytes (PSIZE x8) at the edges. Every operation: clear stale error flags,
 * wait BSY, set the mode bits, start, wait BSY, check the error flags, verify.
 * The controller is unlocked for each operation and locked again after it.
 * Host builds with MCU_FLASH_MODEL run this file against model_stm32f4.c. */
#include "flash.h"
#include "mcu_proto.h"
#include "mcu_util.h"
#include "stm32_flash.h"

flash_stats_t flash_stats;
static uint8_t *fl_mem;  /* memory-mapped view of the area (reads) */
static uint32_t fl_addr; /* flash address of the area (controller side) */
static uint32_t fl_size;

#ifndef MCU_FLASH_MODEL_ADDR
#define MCU_FLASH_MODEL_ADDR 0x08020000u /* model: the area at sector 5 */
#endif

int flash_init(uint8_t *area, uint32_t size, const uint8_t *id) {
    int loaded = 1;
    fl_size = size;
#ifdef MCU_FLASH_MODEL
    fl_addr = MCU_FLASH_MODEL_ADDR;
    fl_mem = stm32m_attach(area, size, fl_addr, id, &loaded);
#else
    (void)id;
    fl_mem = area; /* the area is flash itself: what the flasher or the last patch wrote */
    fl_addr = (uint32_t)(uintptr_t)area;
#endif
    return loaded;
}

uint32_t flash_size(void) { return fl_size; }
const uint8_t *flash_ptr(uint32_t off) { return fl_mem + off; }

int flash_read(uint32_t off, void *data, uint32_t n) {
    if (off > fl_size || n > fl_size - off) return FLASH_E_RANGE;
    memcpy(data, fl_mem + off, n);
    return FLASH_OK;
}

/* No ECC on the F4: every range reads; erased = all 0xFF. */
int flash_readable(uint32_t off, uint32_t n) {
    (void)off;
    (void)n;
    return 1;
}
int flash_erased(uint32_t off, uint32_t n) {
    const uint8_t *p = fl_mem + off;
    if (off > fl_size || n > fl_size - off) return 0;
    while (n--)
        if (*p++ != 0xFFu) return 0;
    return 1;
}

void flash_set_fault(uint32_t n, uint8_t torn) {
#if defined(MCU_TEST_BUILD) && defined(MCU_FLASH_MODEL)
    stm32m_set_fault(n, torn);
#else
    (void)n;
    (void)torn;
#endif
}

static void wait_idle(void) {
    while (F4_FLASH->SR & F4_SR_BSY) {
    }
}

static int unlock(void) {
    if (!(F4_FLASH->CR & F4_CR_LOCK)) return 0;
    F4_W(F4_FLASH->KEYR, STM32_FLASH_KEY1);
    F4_W(F4_FLASH->KEYR, STM32_FLASH_KEY2);
    return (F4_FLASH->CR & F4_CR_LOCK) ? -1 : 0;
}

static void lock(void) { F4_W(F4_FLASH->CR, F4_CR_LOCK); }

/* Start of an operation: idle, stale flags cleared (write 1 to clear), unlocked. */
static int begin(void) {
    wait_idle();
    F4_W(F4_FLASH->SR, F4_SR_ERRORS | F4_SR_EOP);
    return unlock();
}

static int end(void) {
    uint32_t sr;
    wait_idle();
    sr = F4_FLASH->SR;
    F4_W(F4_FLASH->CR, 0);
    lock();
    if (sr & F4_SR_ERRORS) {
        F4_W(F4_FLASH->SR, sr & (F4_SR_ERRORS | F4_SR_EOP));
        return -1;
    }
    return 0;
}

/* The data cache may hold erased/programmed lines: reset it (RM0090 3.5.2). */
static void caches_reset(void) {
    uint32_t acr = F4_FLASH->ACR;
    F4_W(F4_FLASH->ACR, acr & ~(F4_ACR_DCEN | F4_ACR_ICEN));
    F4_W(F4_FLASH->ACR, (acr & ~(F4_ACR_DCEN | F4_ACR_ICEN)) | F4_ACR_DCRST | F4_ACR_ICRST);
    F4_W(F4_FLASH->ACR, acr);
}

int flash_erase_page(uint32_t off) {
    uint32_t start, sz, snb, i;
    if (off >= fl_size || fl_size - off < MCU_FLASH_PAGE) return FLASH_E_RANGE;
    if (off % MCU_FLASH_PAGE) return FLASH_E_ALIGN;
    snb = f4_sector_of(fl_addr + off, &start, &sz);
    if (start != fl_addr + off || sz != MCU_FLASH_PAGE) return FLASH_E_ALIGN; /* one sector */
#ifdef MCU_FLASH_MODEL
    stm32m_op_begin(1);
#endif
    flash_stats.erases++;
    if (begin() != 0) { flash_stats.errors++; return FLASH_E_IO; }
    F4_W(F4_FLASH->CR, F4_CR_SER | (snb << F4_CR_SNB_SHIFT));
    F4_W(F4_FLASH->CR, F4_CR_SER | (snb << F4_CR_SNB_SHIFT) | F4_CR_STRT);
    if (end() != 0) { flash_stats.errors++; return FLASH_E_IO; }
    caches_reset();
    for (i = 0; i < MCU_FLASH_PAGE; i++)
        if (fl_mem[off + i] != 0xFFu) { flash_stats.errors++; return FLASH_E_IO; }
    return FLASH_OK;
}

int flash_program(uint32_t off, const void *data, uint32_t n) {
    const uint8_t *d = (const uint8_t *)data, *cur;
    uint32_t i, units = 0, psize = 99u;
    if (off > fl_size || n > fl_size - off) return FLASH_E_RANGE;
    cur = fl_mem + off;
    for (i = 0; i < n; i++)
        if ((uint8_t)(cur[i] & d[i]) != d[i]) { flash_stats.refused++; return FLASH_E_ZERO_TO_ONE; }
    for (i = 0; i < n;) { /* count the bus writes (model: where a torn cut falls) */
        uint32_t a = fl_addr + off + i;
        i += (a % 4u == 0u && n - i >= 4u) ? 4u : 1u;
        units++;
    }
#ifdef MCU_FLASH_MODEL
    stm32m_op_begin(units);
#endif
    flash_stats.programs++;
    if (begin() != 0) { flash_stats.errors++; return FLASH_E_IO; }
    for (i = 0; i < n;) {
        uint32_t a = fl_addr + off + i, want = (a % 4u == 0u && n - i >= 4u) ? F4_PSIZE_X32 : F4_PSIZE_X8;
        if (want != psize) { /* PSIZE is changed only with PG clear and no operation running */
            wait_idle();
            F4_W(F4_FLASH->CR, want << F4_CR_PSIZE_SHIFT);
            F4_W(F4_FLASH->CR, (want << F4_CR_PSIZE_SHIFT) | F4_CR_PG);
            psize = want;
        }
        if (want == F4_PSIZE_X32) {
            F4_STORE(a, mcu_get_u32(d + i), 4u);
            i += 4u;
        } else {
            F4_STORE(a, d[i], 1u);
            i += 1u;
        }
        wait_idle();
        if (F4_FLASH->SR & F4_SR_ERRORS) break;
    }
    if (end() != 0 || memcmp(cur, d, n) != 0) { flash_stats.errors++; return FLASH_E_IO; }
    return FLASH_OK;
}
