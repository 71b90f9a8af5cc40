/* Register-level model of the STM32L4+ flash controller (RM0432 §3.3) for host builds:
 * registers in a struct the backend (flash_stm32l4.c) writes through the L4_FLASH
 * pointer; each register write / flash store / checked read goes to this model, which
 * enforces the real rules:
 *   - CR locked after reset; KEY1, KEY2 in KEYR unlock it; any other KEYR write locks it
 *     until reset; writes to a locked CR are ignored;
 *   - programming is a double word: with PG set, a 32-bit store to an 8-aligned address
 *     then one to address + 4 (anything else: PGAERR; a byte/halfword store: SIZERR;
 *     a store without PG or with an error flag pending: PGSERR);
 *   - a double word is programmed only if it is erased (reads all 0xFF with erased ECC),
 *     or with all zeros; otherwise PROGERR and nothing is written: never twice;
 *   - PER + PNB + BKER + STRT erases one 4 KB page of bank 1 or 2 (dual-bank mode,
 *     OPTR.DBANK = 1); pages outside the weight area and mass erase: WRPERR;
 *   - every double word carries an ECC state (erased / good / broken), persisted with
 *     the array: a torn program (power cut between its cells) leaves the first word
 *     programmed, the second erased and the ECC broken; a torn erase leaves half the
 *     page erased and the other half with broken ECC. Reading a broken double word
 *     through the checked read sets FLASH_ECCR.ECCD (+ the address), as the chip does
 *     before raising NMI.
 * Operations complete instantly (BSY reads 0). Power cuts: model_common.c. */
#include "flash.h"
#include "mcu_proto.h"
#include "mcu_util.h"
#include "stm32_flash.h"
#include "stm32_model.h"

#define ST_ERASED 0u
#define ST_GOOD 1u
#define ST_BROKEN 2u

l4_flash_t l4m_regs;
static uint32_t cr_shadow, sr_shadow, eccr_shadow;
static uint8_t key_stage, hard_locked, pend;
static uint32_t pend_addr, pend_lo;

#define STATE(dw) stm32m_mem[stm32m_size + (dw)]

uint32_t stm32m_state_bytes(uint32_t size) { return size / 8u; }

void stm32m_state_init(uint8_t *mem, uint32_t size) {
    uint32_t dw, k;
    for (dw = 0; dw < size / 8u; dw++) {
        uint8_t ff = 1;
        for (k = 0; k < 8u; k++)
            if (mem[8u * dw + k] != 0xFFu) ff = 0;
        mem[size + dw] = ff ? ST_ERASED : ST_GOOD;
    }
}

void stm32m_power_on(void) {
    memset((void *)&l4m_regs, 0, sizeof l4m_regs);
    l4m_regs.CR = cr_shadow = L4_CR_LOCK;
    l4m_regs.OPTR = L4_OPTR_DBANK | 0xFFu; /* dual bank, RDP level 0 (0xAA) is not modelled */
    l4m_regs.ACR = 5u | L4_ACR_ICEN | L4_ACR_DCEN;
    sr_shadow = eccr_shadow = 0;
    key_stage = hard_locked = pend = 0;
}

static void flag(uint32_t f) { l4m_regs.SR = sr_shadow = sr_shadow | f; }

static void persist_dw(uint32_t dw) {
    stm32m_persist(8u * dw, 8u);
    stm32m_persist(stm32m_size + dw, 1u);
}

static void erase_page(uint32_t bank, uint32_t pnb) {
    uint32_t a = L4_FLASH_ORIGIN + bank * L4_BANK_SIZE + pnb * L4_PAGE_DUAL, off, dw;
    if (a < stm32m_vaddr || a + L4_PAGE_DUAL > stm32m_vaddr + stm32m_size) {
        flag(L4_SR_WRPERR);
        return;
    }
    off = a - stm32m_vaddr;
    if (stm32m_unit()) { /* torn erase: half done, the rest's ECC no longer matches */
        memset(stm32m_mem + off, 0xFF, L4_PAGE_DUAL / 2u);
        for (dw = off / 8u; dw < (off + L4_PAGE_DUAL) / 8u; dw++)
            STATE(dw) = dw < (off + L4_PAGE_DUAL / 2u) / 8u ? ST_ERASED : ST_BROKEN;
        stm32m_persist(off, L4_PAGE_DUAL);
        stm32m_persist(stm32m_size + off / 8u, L4_PAGE_DUAL / 8u);
        board_flash_die();
    }
    memset(stm32m_mem + off, 0xFF, L4_PAGE_DUAL);
    memset(stm32m_mem + stm32m_size + off / 8u, ST_ERASED, L4_PAGE_DUAL / 8u);
    stm32m_persist(off, L4_PAGE_DUAL);
    stm32m_persist(stm32m_size + off / 8u, L4_PAGE_DUAL / 8u);
    flag(L4_SR_EOP);
}

void l4m_reg_written(volatile uint32_t *reg) {
    if (reg == &l4m_regs.KEYR) {
        uint32_t v = l4m_regs.KEYR;
        l4m_regs.KEYR = 0;
        if (hard_locked || !(cr_shadow & L4_CR_LOCK)) {
            hard_locked = 1;
            l4m_regs.CR = cr_shadow |= L4_CR_LOCK;
        } else if (key_stage == 0 && v == STM32_FLASH_KEY1) {
            key_stage = 1;
        } else if (key_stage == 1 && v == STM32_FLASH_KEY2) {
            key_stage = 0;
            l4m_regs.CR = cr_shadow &= ~L4_CR_LOCK;
        } else {
            key_stage = 0;
            hard_locked = 1;
        }
    } else if (reg == &l4m_regs.SR) {
        uint32_t w = l4m_regs.SR;
        l4m_regs.SR = sr_shadow &= ~(w & (L4_SR_ERRORS | L4_SR_EOP));
    } else if (reg == &l4m_regs.ECCR) {
        /* ECCC/ECCD: write 1 to clear; ECCIE (bit 24) writable; the address read-only */
        uint32_t w = l4m_regs.ECCR;
        eccr_shadow = (eccr_shadow & ~(w & (L4_ECCR_ECCC | L4_ECCR_ECCD)) & ~(1u << 24)) | (w & (1u << 24));
        l4m_regs.ECCR = eccr_shadow;
    } else if (reg == &l4m_regs.CR) {
        uint32_t v = l4m_regs.CR;
        if (cr_shadow & L4_CR_LOCK) {
            l4m_regs.CR = cr_shadow;
            return;
        }
        if (pend && !(v & L4_CR_PG)) { /* first word written, second never came */
            pend = 0;
            flag(L4_SR_PGSERR);
        }
        if (v & L4_CR_LOCK) {
            l4m_regs.CR = cr_shadow = v;
            return;
        }
        cr_shadow = v & ~L4_CR_STRT;
        if (v & L4_CR_STRT) {
            if (sr_shadow & L4_SR_ERRORS) flag(L4_SR_PGSERR);
            else if (v & (L4_CR_MER1 | L4_CR_MER2)) flag(L4_SR_WRPERR);
            else if ((v & L4_CR_PER) && !(v & L4_CR_PG))
                erase_page((v & L4_CR_BKER) ? 1u : 0u, (v & L4_CR_PNB_MASK) >> L4_CR_PNB_SHIFT);
            else flag(L4_SR_PGSERR);
        }
        l4m_regs.CR = cr_shadow;
    } else if (reg == &l4m_regs.OPTKEYR || reg == &l4m_regs.PDKEYR) {
        *reg = 0;
    }
}

void l4m_bus_write(uint32_t addr, uint32_t v, uint32_t size) {
    uint32_t off, dw, k;
    uint8_t val[8], was_ff = 1, zero = 1;
    if (size != 4u) { flag(L4_SR_SIZERR); return; }
    if (addr < stm32m_vaddr || addr + size > stm32m_vaddr + stm32m_size) { flag(L4_SR_WRPERR); return; }
    if ((cr_shadow & L4_CR_LOCK) || !(cr_shadow & L4_CR_PG) || (cr_shadow & (L4_CR_PER | L4_CR_MER1 | L4_CR_MER2)) ||
        (sr_shadow & L4_SR_ERRORS)) {
        pend = 0;
        flag(L4_SR_PGSERR);
        return;
    }
    if (!pend) {
        if (addr % 8u) { flag(L4_SR_PGAERR); return; }
        pend = 1;
        pend_addr = addr;
        pend_lo = v;
        return;
    }
    pend = 0;
    if (addr != pend_addr + 4u) { flag(L4_SR_PGAERR); return; }
    off = pend_addr - stm32m_vaddr;
    dw = off / 8u;
    mcu_put_u32(val, pend_lo);
    mcu_put_u32(val + 4, v);
    for (k = 0; k < 8u; k++) {
        if (stm32m_mem[off + k] != 0xFFu) was_ff = 0;
        if (val[k]) zero = 0;
    }
    if (!(was_ff && STATE(dw) == ST_ERASED) && !zero) { flag(L4_SR_PROGERR); return; }
    if (stm32m_unit()) { /* torn: first word in, second not, ECC broken */
        for (k = 0; k < 4u; k++) stm32m_mem[off + k] &= val[k];
        STATE(dw) = ST_BROKEN;
        persist_dw(dw);
        board_flash_die();
    }
    for (k = 0; k < 8u; k++) stm32m_mem[off + k] &= val[k];
    if (STATE(dw) != ST_BROKEN) STATE(dw) = ST_GOOD;
    persist_dw(dw);
    flag(L4_SR_EOP);
}

uint32_t l4m_bus_read(uint32_t addr) {
    uint32_t off = addr - stm32m_vaddr, a = addr - L4_FLASH_ORIGIN;
    if (addr < stm32m_vaddr || addr + 4u > stm32m_vaddr + stm32m_size) return 0xFFFFFFFFu;
    if (STATE(off / 8u) == ST_BROKEN && !(eccr_shadow & L4_ECCR_ECCD))
        l4m_regs.ECCR = eccr_shadow = (eccr_shadow & ~(L4_ECCR_ADDR_MASK | L4_ECCR_BK)) | L4_ECCR_ECCD |
                                      ((a % L4_BANK_SIZE) & L4_ECCR_ADDR_MASK) |
                                      (a >= L4_BANK_SIZE ? L4_ECCR_BK : 0u);
    return mcu_get_u32(stm32m_mem + off);
}
