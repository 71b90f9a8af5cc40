/* Board-layer functions every Cortex-M family shares: startup after the family's
 * Reset_Handler, fault/default handlers, the SysTick counter, memory use
 * from the linker symbols, and exit/log (semihosting in test builds, reset otherwise). */
#include "cortexm.h"
#include "board.h"

extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[];
int mcu_main(void);

void Default_Handler(void) {
    for (;;) __asm volatile("wfi");
}
void HardFault_Handler(void) { board_exit(0x7F); }

void cortexm_start(void) {
    uint32_t *s, *d;
#if defined(__ARM_FP)
    SCB_CPACR |= 0xFu << 20; /* CP10, CP11 full access */
    __asm volatile("dsb\n isb");
#endif
    for (s = _sidata, d = _sdata; d < _edata;) *d++ = *s++;
    for (d = _sbss; d < _ebss;) *d++ = 0;
    mcu_main();
    board_exit(0);
}

static volatile uint32_t systick_wraps;
void SysTick_Handler(void) { systick_wraps++; }

void cortexm_systick_start(void) {
    SYST_RVR = 0x00FFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 0x7u; /* processor clock, interrupt on wrap, enable */
}

uint64_t cortexm_systick_count(void) {
    uint32_t p = irq_save();
    uint32_t hi = systick_wraps, v = SYST_CVR;
    if (SCB_ICSR & ICSR_PENDSTSET) { /* wrapped, handler not run yet */
        v = SYST_CVR;
        hi++;
    }
    irq_restore(p);
    return ((uint64_t)hi << 24) + (0x00FFFFFFu - v);
}

extern char __mcu_flash_start[], __mcu_flash_end[], __mcu_ram_start[], __mcu_ram_end[];
uint32_t board_flash_used(void) { return (uint32_t)(__mcu_flash_end - __mcu_flash_start); }
uint32_t board_ram_used(void) { return (uint32_t)(__mcu_ram_end - __mcu_ram_start); }

#ifdef MCU_TEST_BUILD
void board_exit(int code) {
    uint32_t args[2] = {0x20026u /* ADP_Stopped_ApplicationExit */, (uint32_t)code};
    board_uart_flush();
    cortexm_semihost(0x20u /* SYS_EXIT_EXTENDED */, args);
    for (;;) {
    }
}
void board_log(const char *s) {
    cortexm_semihost(0x04u /* SYS_WRITE0 */, s);
    cortexm_semihost(0x04u, "\n");
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
