/* flash.h over the STM32L4+ flash controller (RM0432 §3, STM32L4R5/L4S5): the weight
 * area's erase unit (MCU_FLASH_PAGE) is one 4 KB page of the default dual-bank mode
 * (DBANK = 1; single-bank mode, 8 KB pages and 128-bit rows, is refused). Programming
 * is by 64-bit double word (two 32-bit stores to one aligned double word), each with 8
 * ECC bits: a double word is programmed at most once between erases, so a program
 * that touches a double word already programmed is refused (FLASH_E_ZERO_TO_ONE) and a
 * double word whose target value is all 0xFF is left erased (nothing to write).
 * A program or erase cut by power loss leaves cells whose ECC does not match: reading
 * them raises an ECC double error (FLASH_ECCR.ECCD, which raises NMI); the NMI handler
 * (boards/stm32l4/startup.c -> mcu_flash_nmi) clears it and counts it, and
 * flash_readable / flash_erased report such a range as unreadable / not erased, which
 * the patch engine treats as an invalid record or entry (docs/patch-device.md).
 * Host builds with MCU_FLASH_MODEL run this file against model_stm32l4.c. */
#include "flash.h"
#include "mcu_proto.h"
#include "mcu_util.h"
#include "stm32_flash.h"

flash_stats_t flash_stats;
static uint8_t *fl_mem;
static uint32_t fl_addr;
static uint32_t fl_size;
static uint8_t fl_bad_mode; /* single-bank option: not supported */
static volatile uint32_t ecc_hits;

#ifndef MCU_FLASH_MODEL_ADDR
#define MCU_FLASH_MODEL_ADDR (L4_FLASH_ORIGIN + L4_BANK_SIZE) /* model: area at bank 2 */
#endif

/* ECC double error: NMI on the chip; called by the NMI handler (returns 1 when it was
 * the flash's) and after checked reads. */
int mcu_flash_nmi(void) {
    uint32_t e = L4_FLASH->ECCR;
    if (!(e & L4_ECCR_ECCD)) return 0;
    L4_W(L4_FLASH->ECCR, (e & ~(L4_ECCR_ECCC | L4_ECCR_ECCD)) | L4_ECCR_ECCD); /* w1c */
    ecc_hits++;
    return 1;
}

int flash_init(uint8_t *area, uint32_t size, const uint8_t *id) {
    int loaded = 1;
    fl_size = size;
#ifdef MCU_FLASH_MODEL
    fl_addr = MCU_FLASH_MODEL_ADDR;
    fl_mem = stm32m_attach(area, size, fl_addr, id, &loaded);
#else
    (void)id;
    fl_mem = area;
    fl_addr = (uint32_t)(uintptr_t)area;
#endif
    fl_bad_mode = !(L4_FLASH->OPTR & L4_OPTR_DBANK) || MCU_FLASH_PAGE != L4_PAGE_DUAL;
    return loaded;
}

uint32_t flash_size(void) { return fl_size; }
const uint8_t *flash_ptr(uint32_t off) { return fl_mem + off; }

int flash_read(uint32_t off, void *data, uint32_t n) {
    if (off > fl_size || n > fl_size - off) return FLASH_E_RANGE;
    memcpy(data, fl_mem + off, n);
    return FLASH_OK;
}

void flash_set_fault(uint32_t n, uint8_t torn) {
#if defined(MCU_TEST_BUILD) && defined(MCU_FLASH_MODEL)
    stm32m_set_fault(n, torn);
#else
    (void)n;
    (void)torn;
#endif
}

/* 1 when every double word touching [off, off+n) reads without an ECC double error. */
int flash_readable(uint32_t off, uint32_t n) {
    uint32_t a, e, h0 = ecc_hits;
    if (off > fl_size || n > fl_size - off) return 0;
    if (!n) return 1;
    e = fl_addr + off + n;
    for (a = (fl_addr + off) & ~7u; a < e; a += 8u) {
        (void)L4_LOAD(a);
        (void)L4_LOAD(a + 4u);
    }
    (void)mcu_flash_nmi();
    return ecc_hits == h0;
}

int flash_erased(uint32_t off, uint32_t n) {
    const uint8_t *p = fl_mem + off;
    uint32_t i;
    if (off > fl_size || n > fl_size - off) return 0;
    for (i = 0; i < n; i++)
        if (p[i] != 0xFFu) return 0;
    return flash_readable(off, n);
}

static void wait_idle(void) {
    while (L4_FLASH->SR & L4_SR_BSY) {
    }
}

static int begin(void) {
    wait_idle();
    L4_W(L4_FLASH->SR, L4_SR_ERRORS | L4_SR_EOP); /* stale flags block the next operation */
    if (L4_FLASH->CR & L4_CR_LOCK) {
        L4_W(L4_FLASH->KEYR, STM32_FLASH_KEY1);
        L4_W(L4_FLASH->KEYR, STM32_FLASH_KEY2);
    }
    return (L4_FLASH->CR & L4_CR_LOCK) ? -1 : 0;
}

static int end(void) {
    uint32_t sr;
    wait_idle();
    sr = L4_FLASH->SR;
    L4_W(L4_FLASH->CR, 0);
    L4_W(L4_FLASH->CR, L4_CR_LOCK);
    if (sr & L4_SR_ERRORS) {
        L4_W(L4_FLASH->SR, sr & (L4_SR_ERRORS | L4_SR_EOP));
        return -1;
    }
    return 0;
}

static void caches_reset(void) {
    uint32_t acr = L4_FLASH->ACR;
    L4_W(L4_FLASH->ACR, acr & ~(L4_ACR_DCEN | L4_ACR_ICEN));
    L4_W(L4_FLASH->ACR, (acr & ~(L4_ACR_DCEN | L4_ACR_ICEN)) | L4_ACR_DCRST | L4_ACR_ICRST);
    L4_W(L4_FLASH->ACR, acr);
}

int flash_erase_page(uint32_t off) {
    uint32_t a, bank, pnb;
    if (off >= fl_size || fl_size - off < MCU_FLASH_PAGE) return FLASH_E_RANGE;
    if (off % MCU_FLASH_PAGE) return FLASH_E_ALIGN;
    if (fl_bad_mode) { flash_stats.errors++; return FLASH_E_IO; }
    a = fl_addr + off - L4_FLASH_ORIGIN;
    bank = a >= L4_BANK_SIZE;
    pnb = (a - bank * L4_BANK_SIZE) / L4_PAGE_DUAL;
#ifdef MCU_FLASH_MODEL
    stm32m_op_begin(1);
#endif
    flash_stats.erases++;
    if (begin() != 0) { flash_stats.errors++; return FLASH_E_IO; }
    L4_W(L4_FLASH->CR, L4_CR_PER | (pnb << L4_CR_PNB_SHIFT) | (bank ? L4_CR_BKER : 0u));
    L4_W(L4_FLASH->CR, L4_FLASH->CR | L4_CR_STRT);
    if (end() != 0) { flash_stats.errors++; return FLASH_E_IO; }
    caches_reset();
    if (!flash_erased(off, MCU_FLASH_PAGE)) { flash_stats.errors++; return FLASH_E_IO; }
    return FLASH_OK;
}

/* Value of the double word at dw (area offset, 8-aligned) after programming
 * [off, off+n) with d; bytes outside the range are 0xFF. */
static void dw_value(uint32_t dw, uint32_t off, uint32_t n, const uint8_t *d, uint8_t v[8]) {
    uint32_t k;
    for (k = 0; k < 8u; k++) {
        uint32_t o = dw + k;
        v[k] = (o >= off && o < off + n) ? d[o - off] : 0xFFu;
    }
}

static int all_ff8(const uint8_t *v) {
    uint32_t k;
    for (k = 0; k < 8u; k++)
        if (v[k] != 0xFFu) return 0;
    return 1;
}

int flash_program(uint32_t off, const void *data, uint32_t n) {
    const uint8_t *d = (const uint8_t *)data;
    uint32_t dw, first, last, units = 0;
    uint8_t v[8];
    if (off > fl_size || n > fl_size - off) return FLASH_E_RANGE;
    if (!n) return FLASH_OK;
    if (fl_bad_mode) { flash_stats.errors++; return FLASH_E_IO; }
    first = off & ~7u;
    last = (off + n + 7u) & ~7u;
    for (dw = first; dw < last; dw += 8u) {
        dw_value(dw, off, n, d, v);
        if (all_ff8(v)) continue;
        if (!flash_erased(dw, 8)) { flash_stats.refused++; return FLASH_E_ZERO_TO_ONE; }
        units++;
    }
    if (!units) return FLASH_OK;
#ifdef MCU_FLASH_MODEL
    stm32m_op_begin(units);
#endif
    flash_stats.programs++;
    if (begin() != 0) { flash_stats.errors++; return FLASH_E_IO; }
    L4_W(L4_FLASH->CR, L4_CR_PG);
    for (dw = first; dw < last; dw += 8u) {
        dw_value(dw, off, n, d, v);
        if (all_ff8(v)) continue;
        L4_STORE(fl_addr + dw, mcu_get_u32(v));
        L4_STORE(fl_addr + dw + 4u, mcu_get_u32(v + 4));
        wait_idle();
        if (L4_FLASH->SR & L4_SR_ERRORS) break;
    }
    if (end() != 0 || memcmp(fl_mem + off, d, n) != 0 || !flash_readable(off, n)) {
        flash_stats.errors++;
        return FLASH_E_IO;
    }
    return FLASH_OK;
}
