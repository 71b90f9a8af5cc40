/* What the app needs from a board layer (firmware_templates/boards/<family>/). */
#ifndef MCU_BOARD_H
#define MCU_BOARD_H

#include <stdint.h>

void board_init(void);
/* Blocking read of one byte from the host link (may sleep until one arrives). */
uint8_t board_uart_getc(void);
/* Write n bytes to the host link (blocking). */
void board_uart_write(const uint8_t *d, uint32_t n);
/* Flush buffered output (no-op where writes are unbuffered). */
void board_uart_flush(void);
/* Free-running 64-bit tick counter (SysTick based on Cortex-M, monotonic ns on host). */
uint64_t board_ticks(void);
/* Leave the firmware: semihosting exit in test builds, reset otherwise. */
void board_exit(int code);
/* Debug log line (semihosting in test builds, stderr on host; no-op otherwise). */
void board_log(const char *s);
/* Static memory use known to the board (linker symbols); 0 = unknown. */
uint32_t board_flash_used(void);
uint32_t board_ram_used(void);

/* Build-time facts, passed by toolchain/build.py as -D. */
#ifndef MCU_BOARD_NAME
#define MCU_BOARD_NAME "unknown"
#endif
#ifndef MCU_BUILD_ID
#define MCU_BUILD_ID "dev"
#endif
#ifndef MCU_FLASH_BUDGET
#define MCU_FLASH_BUDGET 0u
#endif
#ifndef MCU_RAM_BUDGET
#define MCU_RAM_BUDGET 0u
#endif
#ifndef MCU_TICK_HZ
#define MCU_TICK_HZ 0u
#endif
#ifndef MCU_INSTR_PER_TICK
#define MCU_INSTR_PER_TICK 0u
#endif

#endif
