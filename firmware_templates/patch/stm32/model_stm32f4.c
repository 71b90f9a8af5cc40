/* Register-level model of the STM32F4 flash controller (RM0090 §3.5-3.9) for host
 * builds: the registers are a struct the backend (flash_stm32f4.c) writes through the
 * F4_FLASH pointer, and each register write / flash store is handed to this model,
 * which enforces the rules a real controller does:
 *   - CR is locked after reset; KEY1 then KEY2 in KEYR unlocks it; any other write to
 *     KEYR (a wrong key, or keys while unlocked) locks CR until the next reset;
 *     writes to a locked CR are ignored; setting LOCK locks it;
 *   - a store into flash without PG, or any operation started while an error flag is
 *     still set, is a sequence error (PGSERR) and does nothing;
 *   - a store whose size differs from CR.PSIZE sets PGPERR, a misaligned one PGAERR;
 *   - programming clears bits (new = old AND value); SER + SNB + STRT erases a sector
 *     of the real sector map (16/16/16/16/64/128.. KB); sectors outside the weight area
 *     and mass erase are write-protected here (WRPERR): the code is never touched;
 *   - error flags and EOP are cleared by writing 1.
 * Operations complete instantly (BSY reads 0). Power cuts: model_common.c. */
#include "flash.h"
#include "mcu_util.h"
#include "stm32_flash.h"
#include "stm32_model.h"

f4_flash_t f4m_regs;
static uint32_t cr_shadow, sr_shadow;
static uint8_t key_stage, hard_locked;

uint32_t stm32m_state_bytes(uint32_t size) {
    (void)size;
    return 0u; /* no ECC on the F4 */
}
void stm32m_state_init(uint8_t *mem, uint32_t size) {
    (void)mem;
    (void)size;
}

void stm32m_power_on(void) {
    memset((void *)&f4m_regs, 0, sizeof f4m_regs);
    f4m_regs.CR = cr_shadow = F4_CR_LOCK;
    f4m_regs.ACR = F4_ACR_ICEN | F4_ACR_DCEN;
    sr_shadow = 0;
    key_stage = 0;
    hard_locked = 0;
}

static void flag(uint32_t f) { f4m_regs.SR = sr_shadow = sr_shadow | f; }

static void erase_sector(uint32_t snb) {
    uint32_t a, start = 0, sz = 0, off;
    /* find the sector's address from its number */
    for (a = F4_FLASH_ORIGIN; a < F4_FLASH_ORIGIN + 0x100000u; a += sz)
        if (f4_sector_of(a, &start, &sz) == snb) break;
    if (a >= F4_FLASH_ORIGIN + 0x100000u || start < stm32m_vaddr ||
        start + sz > stm32m_vaddr + stm32m_size) {
        flag(F4_SR_WRPERR);
        return;
    }
    off = start - stm32m_vaddr;
    if (stm32m_unit()) { /* torn: the power fails half way through the sector */
        memset(stm32m_mem + off, 0xFF, sz / 2u);
        stm32m_persist(off, sz / 2u);
        board_flash_die();
    }
    memset(stm32m_mem + off, 0xFF, sz);
    stm32m_persist(off, sz);
    flag(F4_SR_EOP);
}

void f4m_reg_written(volatile uint32_t *reg) {
    if (reg == &f4m_regs.KEYR) {
        uint32_t v = f4m_regs.KEYR;
        f4m_regs.KEYR = 0; /* write-only */
        if (hard_locked || !(cr_shadow & F4_CR_LOCK)) {
            hard_locked = 1; /* wrong sequence: bus error, CR locked until reset */
            f4m_regs.CR = cr_shadow |= F4_CR_LOCK;
        } else if (key_stage == 0 && v == STM32_FLASH_KEY1) {
            key_stage = 1;
        } else if (key_stage == 1 && v == STM32_FLASH_KEY2) {
            key_stage = 0;
            f4m_regs.CR = cr_shadow &= ~F4_CR_LOCK;
        } else {
            key_stage = 0;
            hard_locked = 1;
        }
    } else if (reg == &f4m_regs.SR) {
        uint32_t w = f4m_regs.SR;
        f4m_regs.SR = sr_shadow &= ~(w & (F4_SR_ERRORS | F4_SR_EOP));
    } else if (reg == &f4m_regs.CR) {
        uint32_t v = f4m_regs.CR;
        if (cr_shadow & F4_CR_LOCK) { /* locked: ignored */
            f4m_regs.CR = cr_shadow;
            return;
        }
        if (v & F4_CR_LOCK) {
            f4m_regs.CR = cr_shadow = v;
            return;
        }
        cr_shadow = v & ~F4_CR_STRT;
        if (v & F4_CR_STRT) {
            if (sr_shadow & F4_SR_ERRORS) flag(F4_SR_PGSERR);
            else if (v & F4_CR_MER) flag(F4_SR_WRPERR);
            else if ((v & F4_CR_SER) && !(v & F4_CR_PG)) erase_sector((v & F4_CR_SNB_MASK) >> F4_CR_SNB_SHIFT);
            else flag(F4_SR_PGSERR);
        }
        f4m_regs.CR = cr_shadow; /* STRT clears when the operation ends */
    } else if (reg == &f4m_regs.OPTKEYR) {
        f4m_regs.OPTKEYR = 0;
    }
}

void f4m_bus_write(uint32_t addr, uint32_t v, uint32_t size) {
    uint32_t psize = (cr_shadow & F4_CR_PSIZE_MASK) >> F4_CR_PSIZE_SHIFT, off, k;
    if (addr < stm32m_vaddr || addr + size > stm32m_vaddr + stm32m_size) { flag(F4_SR_WRPERR); return; }
    if ((cr_shadow & F4_CR_LOCK) || !(cr_shadow & F4_CR_PG) || (cr_shadow & (F4_CR_SER | F4_CR_MER)) ||
        (sr_shadow & F4_SR_ERRORS)) {
        flag(F4_SR_PGSERR);
        return;
    }
    if (!((psize == F4_PSIZE_X8 && size == 1u) || (psize == F4_PSIZE_X32 && size == 4u))) {
        flag(F4_SR_PGPERR);
        return;
    }
    if (addr % size) { flag(F4_SR_PGAERR); return; }
    off = addr - stm32m_vaddr;
    if (stm32m_unit()) { /* torn: only the low half of the bits made it */
        if (size == 4u) {
            stm32m_mem[off] &= (uint8_t)v;
            stm32m_mem[off + 1u] &= (uint8_t)(v >> 8);
        } else {
            stm32m_mem[off] &= (uint8_t)(v | 0xF0u);
        }
        stm32m_persist(off, size);
        board_flash_die();
    }
    for (k = 0; k < size; k++) stm32m_mem[off + k] &= (uint8_t)(v >> (8u * k));
    stm32m_persist(off, size);
    flag(F4_SR_EOP);
}
