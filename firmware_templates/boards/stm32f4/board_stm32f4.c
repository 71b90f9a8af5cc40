/* STM32F4 board layer: init, SysTick tick counter (DWT cycle counter too when the
 * board TOML sets [timing] counter = "dwt"), exit/log, memory use. */
#include "stm32f4.h"
#include "board.h"

void board_uart_init(void);

static volatile uint32_t systick_wraps;
void SysTick_Handler(void) { systick_wraps++; }

void board_init(void) {
    board_uart_init();
    SYST_RVR = 0x00FFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 0x7u; /* processor clock, interrupt on wrap, enable */
#if defined(MCU_TIMER_DWT)
    /* Real boards: the cycle counter the generated model code reads (QEMU does not
     * emulate DWT; never set counter = "dwt" on an emulated board). */
    DEMCR |= 1u << 24; /* TRCENA */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;    /* CYCCNTENA */
#endif
    __asm volatile("cpsie i");
}

/* SysTick ticks since boot, at the processor clock (MCU_CPU_HZ). */
static uint64_t systick_count(void) {
    uint32_t p = irq_save();
    uint32_t hi = systick_wraps, v = SYST_CVR;
    if (SCB_ICSR & ICSR_PENDSTSET) { /* wrapped, handler not run yet */
        v = SYST_CVR;
        hi++;
    }
    irq_restore(p);
    return ((uint64_t)hi << 24) + (0x00FFFFFFu - v);
}

/* board_ticks() at MCU_TICK_HZ. Normally the SysTick rate itself; a board may ask for
 * a finer unit (netduinoplus2: QEMU clocks SysTick at 168 MHz, 5.95 ns, and reports
 * ticks in ns = instructions under -icount shift=0), converted exactly from the
 * SysTick count. */
uint64_t board_ticks(void) {
    uint64_t t = systick_count();
#if MCU_TICK_HZ != 0 && MCU_TICK_HZ != MCU_CPU_HZ
    return (t / MCU_CPU_HZ) * MCU_TICK_HZ + (t % MCU_CPU_HZ) * MCU_TICK_HZ / MCU_CPU_HZ;
#else
    return t;
#endif
}

extern char __mcu_flash_start[], __mcu_flash_end[], __mcu_ram_start[], __mcu_ram_end[];
uint32_t board_flash_used(void) { return (uint32_t)(__mcu_flash_end - __mcu_flash_start); }
uint32_t board_ram_used(void) { return (uint32_t)(__mcu_ram_end - __mcu_ram_start); }

#ifdef MCU_TEST_BUILD
/* Semihosting: test builds only (QEMU -semihosting, or a debugger that serves it;
 * without one, BKPT 0xAB faults). */
static uint32_t semihost(uint32_t op, const void *arg) {
    register uint32_t r0 __asm("r0") = op;
    register const void *r1 __asm("r1") = arg;
    __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}
void board_exit(int code) {
    uint32_t args[2] = {0x20026u /* ADP_Stopped_ApplicationExit */, (uint32_t)code};
    board_uart_flush();
    semihost(0x20u /* SYS_EXIT_EXTENDED */, args);
    for (;;) {
    }
}
void board_log(const char *s) {
    semihost(0x04u /* SYS_WRITE0 */, s);
    semihost(0x04u, "\n");
}
#else
void board_exit(int code) {
    (void)code;
    board_uart_flush();
    SCB_AIRCR = 0x05FA0004u; /* SYSRESETREQ: QEMU -no-reboot exits, a real MCU resets */
    for (;;) {
    }
}
void board_log(const char *s) { (void)s; }
#endif
