/* Flash API of the weight area: NOR emulation (firmware_templates/patch/flash_nor.c + a
 * board backend in boards/<family>/flash_<family>.c) or a real flash controller
 * (firmware_templates/patch/stm32/flash_stm32{f4,l4}.c).
 *
 * Semantics are those of NOR flash: an erased page reads 0xFF; programming can only
 * clear bits (1 -> 0); a program that would set a bit (0 -> 1) is refused
 * (FLASH_E_ZERO_TO_ONE, nothing written) and counted. Reads are memory-mapped
 * (flash_ptr). Offsets are relative to the start of the weight area.
 *
 * Emulation (test builds): every erase/program goes first to a backing file
 * (QEMU: semihosting SYS_WRITE; host board: pwrite), then to memory, so killing
 * the process between any two operations is a real power cut. A fault countdown
 * (flash_set_fault) ends the process at the N-th operation from now, optionally
 * after writing only half of it to the file (a torn operation). */
#ifndef MCU_FLASH_H
#define MCU_FLASH_H
#include <stdint.h>

#ifndef MCU_FLASH_PAGE
#define MCU_FLASH_PAGE 4096u
#endif

#define FLASH_OK 0
#define FLASH_E_RANGE 1       /* outside the area */
#define FLASH_E_ALIGN 2       /* erase of an address that is not a page start */
#define FLASH_E_ZERO_TO_ONE 3 /* program would set a 0 bit back to 1: refused */
#define FLASH_E_IO 4          /* backing file write failed */

/* Bind the area (memory that holds its build-time image) to the backing store:
 * loads the backing file over it when one exists for this layout (id: 32 bytes),
 * otherwise creates the file from the image. Returns 1 loaded, 0 fresh. */
int flash_init(uint8_t *area, uint32_t size, const uint8_t *id);
int flash_erase_page(uint32_t off);
int flash_program(uint32_t off, const void *data, uint32_t n);
int flash_read(uint32_t off, void *data, uint32_t n);
const uint8_t *flash_ptr(uint32_t off);
uint32_t flash_size(void);
/* 1 when [off, off+n) reads without an ECC error (NOR emulation, STM32F4: always). */
int flash_readable(uint32_t off, uint32_t n);
/* 1 when [off, off+n) is erased: all 0xFF and (ECC flash) no ECC error, so it may be
 * programmed. A torn program or erase on ECC flash is neither erased nor readable. */
int flash_erased(uint32_t off, uint32_t n);

/* Smallest unit a program writes once (bytes): 1 for NOR emulation and the STM32F4,
 * 8 for the STM32L4 (64-bit double word + ECC, never reprogrammed before an erase).
 * Set by toolchain/patch/device.py from the board's flash backend. */
#ifndef MCU_FLASH_WRITE_UNIT
#define MCU_FLASH_WRITE_UNIT 1u
#endif

typedef struct {
    uint32_t erases;
    uint32_t programs;
    uint32_t refused; /* 0 -> 1 attempts */
    uint32_t errors;
} flash_stats_t;
extern flash_stats_t flash_stats;
/* Operations (erase + program) since boot. */
static inline uint32_t flash_ops(void) { return flash_stats.erases + flash_stats.programs; }
/* Test builds: die (power cut) at the n-th flash operation from now (1 = the next),
 * torn = write only its first half to the backing file first. n = 0 disarms. */
void flash_set_fault(uint32_t n, uint8_t torn);

/* Board backend (boards/<family>/flash_<family>.c). */
/* Open the backing store for an area of `size` bytes plus a 64-byte trailer; if it
 * exists with that size and trailer, read the area from it and return 1; else write
 * area + trailer to it and return 0. No backing store configured: return -1. */
int board_flash_open(uint8_t *area, uint32_t size, const uint8_t *trailer64);
/* Write bytes [off, off+n) of the area's new content to the backing store. */
int board_flash_persist(uint32_t off, const uint8_t *data, uint32_t n);
/* Power cut: end now, without any cleanup. */
void board_flash_die(void);
#endif
