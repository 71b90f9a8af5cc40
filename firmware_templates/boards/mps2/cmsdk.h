/* MPS2 (AN385/AN386/AN500) peripherals used by the firmware: CMSDK APB UART0 (core registers: cortexm.h). */
#ifndef MCU_MPS2_CMSDK_H
#define MCU_MPS2_CMSDK_H
#include <stdint.h>
#include "cortexm.h"

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

#ifndef MCU_CPU_HZ
#define MCU_CPU_HZ 25000000u
#endif
#ifndef MCU_UART_BAUD
#define MCU_UART_BAUD 115200u
#endif

#endif
