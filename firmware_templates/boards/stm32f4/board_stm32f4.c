/* STM32F4 board layer: init (DWT cycle counter too when the board TOML sets
 * [timing] counter = "dwt") and the tick counter; the rest is in boards/cortexm. */
#include "stm32f4.h"
#include "board.h"

void board_uart_init(void);

void board_init(void) {
    board_uart_init();
    cortexm_systick_start();
#if defined(MCU_TIMER_DWT)
    /* Real boards: the cycle counter the generated model code reads (QEMU does not
     * emulate DWT; never set counter = "dwt" on an emulated board). */
    DEMCR |= 1u << 24; /* TRCENA */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;    /* CYCCNTENA */
#endif
    __asm volatile("cpsie i");
}

/* board_ticks() at MCU_TICK_HZ. Normally the SysTick rate itself; a board may ask for
 * a finer unit (netduinoplus2: QEMU clocks SysTick at 168 MHz, 5.95 ns, and reports
 * ticks in ns = instructions under -icount shift=0), converted exactly from the
 * SysTick count. */
uint64_t board_ticks(void) {
    uint64_t t = cortexm_systick_count();
#if MCU_TICK_HZ != 0 && MCU_TICK_HZ != MCU_CPU_HZ
    return (t / MCU_CPU_HZ) * MCU_TICK_HZ + (t % MCU_CPU_HZ) * MCU_TICK_HZ / MCU_CPU_HZ;
#else
    return t;
#endif
}
