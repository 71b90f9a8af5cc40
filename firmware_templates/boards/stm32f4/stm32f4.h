/* STM32F2/F4 registers used by the firmware (RM0090 / RM0390 layout): RCC, GPIO,
 * USART (SR/DR/BRR/CR1...); the Cortex-M core registers are in cortexm.h.
 *
 * Per-board choices come from the board TOML ([compiler] defines) as -D:
 *   STM32_USART        1, 2, 3 or 6: the USART wired to the host link
 *   STM32_UART_PORT    GPIO port of the TX/RX pins (0 = A, 1 = B, 2 = C, ...)
 *   STM32_UART_TX_PIN  / STM32_UART_RX_PIN, STM32_UART_AF (alternate function, 7 for
 *                      USART1-3, 8 for USART6)
 *   MCU_CPU_HZ         core clock = SysTick rate; the firmware leaves the clock tree at
 *                      its reset state (HSI, no PLL, AHB/APB prescalers 1), so on a
 *                      real chip this is 16 MHz and the USART kernel clock equals it. */
#ifndef MCU_STM32F4_H
#define MCU_STM32F4_H
#include <stdint.h>
#include "cortexm.h"

#ifndef STM32_USART
#define STM32_USART 1
#endif
#ifndef STM32_UART_PORT
#define STM32_UART_PORT 0
#endif
#ifndef STM32_UART_TX_PIN
#define STM32_UART_TX_PIN 9
#endif
#ifndef STM32_UART_RX_PIN
#define STM32_UART_RX_PIN 10
#endif
#ifndef STM32_UART_AF
#define STM32_UART_AF 7
#endif
#ifndef MCU_CPU_HZ
#define MCU_CPU_HZ 16000000u
#endif
#ifndef MCU_UART_BAUD
#define MCU_UART_BAUD 115200u
#endif
#ifndef STM32_UART_CLK_HZ
#define STM32_UART_CLK_HZ MCU_CPU_HZ /* APB prescalers left at 1 */
#endif

/* RCC */
#define RCC_BASE 0x40023800u
#define RCC_AHB1ENR REG32(RCC_BASE + 0x30u)
#define RCC_APB1ENR REG32(RCC_BASE + 0x40u)
#define RCC_APB2ENR REG32(RCC_BASE + 0x44u)

/* GPIO port n */
#define GPIO_BASE(n) (0x40020000u + 0x400u * (uint32_t)(n))
#define GPIO_MODER(n) REG32(GPIO_BASE(n) + 0x00u)
#define GPIO_OSPEEDR(n) REG32(GPIO_BASE(n) + 0x08u)
#define GPIO_PUPDR(n) REG32(GPIO_BASE(n) + 0x0Cu)
#define GPIO_AFR(n, i) REG32(GPIO_BASE(n) + 0x20u + 4u * (uint32_t)(i)) /* i: 0 low, 1 high */

/* USART instance: base, IRQ number, RCC enable register and bit */
#if STM32_USART == 1
#define USART_BASE 0x40011000u
#define USART_IRQn 37u
#define USART_RCC_ENR RCC_APB2ENR
#define USART_RCC_BIT (1u << 4)
#elif STM32_USART == 2
#define USART_BASE 0x40004400u
#define USART_IRQn 38u
#define USART_RCC_ENR RCC_APB1ENR
#define USART_RCC_BIT (1u << 17)
#elif STM32_USART == 3
#define USART_BASE 0x40004800u
#define USART_IRQn 39u
#define USART_RCC_ENR RCC_APB1ENR
#define USART_RCC_BIT (1u << 18)
#elif STM32_USART == 6
#define USART_BASE 0x40011400u
#define USART_IRQn 71u
#define USART_RCC_ENR RCC_APB2ENR
#define USART_RCC_BIT (1u << 5)
#else
#error "STM32_USART must be 1, 2, 3 or 6"
#endif

#define USART_SR REG32(USART_BASE + 0x00u)
#define USART_DR REG32(USART_BASE + 0x04u)
#define USART_BRR REG32(USART_BASE + 0x08u)
#define USART_CR1 REG32(USART_BASE + 0x0Cu)
#define USART_CR2 REG32(USART_BASE + 0x10u)
#define USART_CR3 REG32(USART_BASE + 0x14u)
#define USART_SR_ORE (1u << 3)
#define USART_SR_RXNE (1u << 5)
#define USART_SR_TC (1u << 6)
#define USART_SR_TXE (1u << 7)
#define USART_CR1_RE (1u << 2)
#define USART_CR1_TE (1u << 3)
#define USART_CR1_RXNEIE (1u << 5)
#define USART_CR1_UE (1u << 13)

#endif
