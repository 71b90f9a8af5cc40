/* MPS2 (AN385/AN386/AN500) peripherals used by the firmware: CMSDK APB UART0, SysTick, SCB, NVIC. */
#ifndef MCU_MPS2_CMSDK_H
#define MCU_MPS2_CMSDK_H
#include <stdint.h>

#define REG32(a) (*(volatile uint32_t *)(a))

#define UART0_BASE 0x40004000u
#define UART_DATA REG32(UART0_BASE + 0x00u)
#define UART_STATE REG32(UART0_BASE + 0x04u)
#define UART_CTRL REG32(UART0_BASE + 0x08u)
#define UART_INTSTATUS REG32(UART0_BASE + 0x0Cu)
#define UART_BAUDDIV REG32(UART0_BASE + 0x10u)
#define UART_STATE_TXFULL 0x1u
#define UART_STATE_RXFULL 0x2u
#define UART_CTRL_TXEN 0x1u
#define UART_CTRL_RXEN 0x2u
#define UART_CTRL_RXINTEN 0x8u
#define UART_INT_RX 0x2u
#define UART0_RX_IRQn 0u /* QEMU mps2: UART0 RX = IRQ 0, TX = IRQ 1 */

#define SYST_CSR REG32(0xE000E010u)
#define SYST_RVR REG32(0xE000E014u)
#define SYST_CVR REG32(0xE000E018u)
#define SCB_ICSR REG32(0xE000ED04u)
#define SCB_AIRCR REG32(0xE000ED0Cu)
#define SCB_CPACR REG32(0xE000ED88u)
#define NVIC_ISER0 REG32(0xE000E100u)
#define ICSR_PENDSTSET (1u << 26)

#ifndef MCU_CPU_HZ
#define MCU_CPU_HZ 25000000u
#endif
#ifndef MCU_UART_BAUD
#define MCU_UART_BAUD 115200u
#endif

static inline uint32_t irq_save(void) {
    uint32_t p;
    __asm volatile("mrs %0, primask\n cpsid i" : "=r"(p)::"memory");
    return p;
}
static inline void irq_restore(uint32_t p) { __asm volatile("msr primask, %0" ::"r"(p) : "memory"); }
#endif
