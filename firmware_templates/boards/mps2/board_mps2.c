/* MPS2 board layer: init and the tick counter (the rest is in boards/cortexm). */
#include "cmsdk.h"
#include "board.h"

void board_uart_init(void);

void board_init(void) {
    board_uart_init();
    cortexm_systick_start();
    __asm volatile("cpsie i");
}

/* SysTick ticks since boot (25 MHz on mps2; under QEMU -icount shift=0 one
 * tick = MCU_INSTR_PER_TICK instructions). */
uint64_t board_ticks(void) { return cortexm_systick_count(); }
