/* STM32 embedded-flash controllers for the patch weight area: register layouts of the
 * STM32F4 (RM0090 / RM0390 "Embedded Flash memory interface") and STM32L4+ (RM0432
 * "Embedded flash memory (FLASH)") controllers, and how the backends
 * (flash_stm32f4.c, flash_stm32l4.c) reach them.
 *
 * On a chip the backend writes the controller's memory-mapped registers and stores
 * words into the flash address range. In a host build (MCU_FLASH_MODEL defined: boards
 * host-stm32f4 / host-stm32l4) the same backend source runs against a register-level
 * model of the controller (model_stm32f4.c / model_stm32l4.c): the F4/L4 pointer
 * macros point at the model's register struct, and every register write and flash
 * store is also handed to the model, which reacts as the hardware would (unlock key
 * sequence, LOCK, PG/SER/PER/STRT, PSIZE and alignment checks, error flags, program
 * only erased double words, ECC), persists the flash array to the board's backing
 * file, and can cut power inside any operation. */
#ifndef MCU_STM32_FLASH_H
#define MCU_STM32_FLASH_H
#include <stdint.h>

#define STM32_FLASH_KEY1 0x45670123u
#define STM32_FLASH_KEY2 0xCDEF89ABu

/* ---- STM32F4 ---------------------------------------------------------------------- */
typedef struct {
    volatile uint32_t ACR, KEYR, OPTKEYR, SR, CR, OPTCR;
} f4_flash_t;
#define F4_FLASH_BASE 0x40023C00u
#define F4_SR_EOP (1u << 0)
#define F4_SR_OPERR (1u << 1)
#define F4_SR_WRPERR (1u << 4)
#define F4_SR_PGAERR (1u << 5)
#define F4_SR_PGPERR (1u << 6)
#define F4_SR_PGSERR (1u << 7)
#define F4_SR_BSY (1u << 16)
#define F4_SR_ERRORS (F4_SR_OPERR | F4_SR_WRPERR | F4_SR_PGAERR | F4_SR_PGPERR | F4_SR_PGSERR)
#define F4_CR_PG (1u << 0)
#define F4_CR_SER (1u << 1)
#define F4_CR_MER (1u << 2)
#define F4_CR_SNB_SHIFT 3u
#define F4_CR_SNB_MASK (0xFu << 3)
#define F4_CR_PSIZE_SHIFT 8u
#define F4_CR_PSIZE_MASK (3u << 8)
#define F4_PSIZE_X8 0u
#define F4_PSIZE_X32 2u
#define F4_CR_STRT (1u << 16)
#define F4_CR_LOCK (1u << 31)
#define F4_ACR_ICEN (1u << 9)
#define F4_ACR_DCEN (1u << 10)
#define F4_ACR_ICRST (1u << 11)
#define F4_ACR_DCRST (1u << 12)
#define F4_FLASH_ORIGIN 0x08000000u
/* Sector map of the single-bank F405/F407/F446 (up to 1 MB): 4 x 16 KB, 64 KB, then
 * 128 KB sectors. Returns the sector holding flash address a (size in *sz). */
static inline uint32_t f4_sector_of(uint32_t a, uint32_t *start, uint32_t *sz) {
    uint32_t o = a - F4_FLASH_ORIGIN;
    if (o < 0x10000u) {
        *sz = 0x4000u;
        *start = F4_FLASH_ORIGIN + (o & ~0x3FFFu);
        return o >> 14;
    }
    if (o < 0x20000u) {
        *sz = 0x10000u;
        *start = F4_FLASH_ORIGIN + 0x10000u;
        return 4u;
    }
    *sz = 0x20000u;
    *start = F4_FLASH_ORIGIN + (o & ~0x1FFFFu);
    return 4u + (o >> 17);
}

/* ---- STM32L4+ --------------------------------------------------------------------- */
typedef struct {
    volatile uint32_t ACR, PDKEYR, KEYR, OPTKEYR, SR, CR, ECCR, RESERVED0, OPTR;
} l4_flash_t;
#define L4_FLASH_BASE 0x40022000u
#define L4_SR_EOP (1u << 0)
#define L4_SR_OPERR (1u << 1)
#define L4_SR_PROGERR (1u << 3)
#define L4_SR_WRPERR (1u << 4)
#define L4_SR_PGAERR (1u << 5)
#define L4_SR_SIZERR (1u << 6)
#define L4_SR_PGSERR (1u << 7)
#define L4_SR_MISERR (1u << 8)
#define L4_SR_FASTERR (1u << 9)
#define L4_SR_RDERR (1u << 14)
#define L4_SR_OPTVERR (1u << 15)
#define L4_SR_BSY (1u << 16)
#define L4_SR_ERRORS (L4_SR_OPERR | L4_SR_PROGERR | L4_SR_WRPERR | L4_SR_PGAERR | L4_SR_SIZERR | \
                      L4_SR_PGSERR | L4_SR_MISERR | L4_SR_FASTERR | L4_SR_RDERR | L4_SR_OPTVERR)
#define L4_CR_PG (1u << 0)
#define L4_CR_PER (1u << 1)
#define L4_CR_MER1 (1u << 2)
#define L4_CR_PNB_SHIFT 3u
#define L4_CR_PNB_MASK (0xFFu << 3)
#define L4_CR_BKER (1u << 11)
#define L4_CR_MER2 (1u << 15)
#define L4_CR_STRT (1u << 16)
#define L4_CR_LOCK (1u << 31)
#define L4_ECCR_ADDR_MASK 0x1FFFFFu
#define L4_ECCR_BK (1u << 21)
#define L4_ECCR_ECCC (1u << 30)
#define L4_ECCR_ECCD (1u << 31)
#define L4_OPTR_DBANK (1u << 22)
#define L4_ACR_ICEN (1u << 9)
#define L4_ACR_DCEN (1u << 10)
#define L4_ACR_ICRST (1u << 11)
#define L4_ACR_DCRST (1u << 12)
#define L4_FLASH_ORIGIN 0x08000000u
#ifndef L4_FLASH_SIZE
#define L4_FLASH_SIZE 0x200000u /* STM32L4R5xI: 2 MB */
#endif
#define L4_BANK_SIZE (L4_FLASH_SIZE / 2u)
#define L4_PAGE_DUAL 4096u  /* DBANK = 1 (the default): 2 x 256 pages of 4 KB */
#define L4_PAGE_SINGLE 8192u /* DBANK = 0: 256 pages of 8 KB (not used: refused) */

/* ---- how the backends reach the hardware ------------------------------------------ */
#ifdef MCU_FLASH_MODEL
void f4m_reg_written(volatile uint32_t *reg);
void f4m_bus_write(uint32_t addr, uint32_t v, uint32_t size);
void l4m_reg_written(volatile uint32_t *reg);
void l4m_bus_write(uint32_t addr, uint32_t v, uint32_t size);
uint32_t l4m_bus_read(uint32_t addr); /* a read through the ECC check (sets ECCR) */
extern f4_flash_t f4m_regs;
extern l4_flash_t l4m_regs;
#define F4_FLASH (&f4m_regs)
#define L4_FLASH (&l4m_regs)
#define F4_W(reg, v) ((reg) = (v), f4m_reg_written(&(reg)))
#define L4_W(reg, v) ((reg) = (v), l4m_reg_written(&(reg)))
#define F4_STORE(a, v, sz) f4m_bus_write((a), (v), (sz))
#define L4_STORE(a, v) l4m_bus_write((a), (v), 4u)
#define L4_LOAD(a) l4m_bus_read(a)
/* model-side power and persistence (model_stm32*.c) */
uint8_t *stm32m_attach(uint8_t *area, uint32_t size, uint32_t vaddr, const uint8_t *id, int *loaded);
void stm32m_op_begin(uint32_t units);
void stm32m_set_fault(uint32_t n, uint8_t torn);
#else
#define F4_FLASH ((f4_flash_t *)F4_FLASH_BASE)
#define L4_FLASH ((l4_flash_t *)L4_FLASH_BASE)
#define F4_W(reg, v) ((reg) = (v))
#define L4_W(reg, v) ((reg) = (v))
#define F4_STORE(a, v, sz) \
    ((sz) == 1u ? (void)(*(volatile uint8_t *)(uintptr_t)(a) = (uint8_t)(v)) \
                : (void)(*(volatile uint32_t *)(uintptr_t)(a) = (v)))
#define L4_STORE(a, v) (*(volatile uint32_t *)(uintptr_t)(a) = (v))
#define L4_LOAD(a) (*(volatile const uint32_t *)(uintptr_t)(a))
#endif
#endif
