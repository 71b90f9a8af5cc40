/* STM32L4+ (STM32L4R5/L4S5, RM0432) registers used by the firmware: RCC, PWR, FLASH
 * (ACR only; the flash-programming backend is firmware_templates/patch/stm32/), GPIO
 * and LPUART1. The Cortex-M core registers are in cortexm.h.
 *
 * Per-board choices come from the board TOML ([compiler] defines) as -D:
 *   STM32_UART_PORT    GPIO port of the LPUART1 TX/RX pins (6 = G on the NUCLEO-L4R5ZI)
 *   STM32_UART_TX_PIN / STM32_UART_RX_PIN, STM32_UART_AF (8 for LPUART1 on PG7/PG8)
 *   STM32_VDDIO2       1: port G is powered from VDDIO2, which must be declared valid
 *                      (PWR_CR2.IOSV) before its pins work (PG2..PG15)
 *   MCU_CPU_HZ         SYSCLK after board_clock_init(): 120 MHz (MSI 4 MHz -> PLL) */
#ifndef MCU_STM32L4_H
#define MCU_STM32L4_H
#include <stdint.h>
#include "cortexm.h"

#ifndef STM32_UART_PORT
#define STM32_UART_PORT 6
#endif
#ifndef STM32_UART_TX_PIN
#define STM32_UART_TX_PIN 7
#endif
#ifndef STM32_UART_RX_PIN
#define STM32_UART_RX_PIN 8
#endif
#ifndef STM32_UART_AF
#define STM32_UART_AF 8
#endif
#ifndef STM32_VDDIO2
#define STM32_VDDIO2 1
#endif
#ifndef MCU_CPU_HZ
#define MCU_CPU_HZ 120000000u
#endif
#ifndef MCU_UART_BAUD
#define MCU_UART_BAUD 115200u
#endif

/* PLL from MSI (4 MHz after reset, range 6): VCO in = 4 MHz / M, VCO = in * N,
 * SYSCLK = VCO / R. 4 / 1 * 60 / 2 = 120 MHz (VCO 240 MHz, inside 64..344 MHz). */
#define L4_MSI_HZ 4000000u
#define L4_PLLM 1u
#define L4_PLLN 60u
#define L4_PLLR 2u
#define L4_SYSCLK_HZ (L4_MSI_HZ / L4_PLLM * L4_PLLN / L4_PLLR)
/* Flash wait states for HCLK in range 1 boost mode (RM0432 table "Number of wait
 * states according to CPU clock (HCLK) frequency"): 5 WS for 100 < HCLK <= 120 MHz. */
#define L4_FLASH_LATENCY 5u

/* RCC */
#define RCC_BASE 0x40021000u
#define RCC_CR REG32(RCC_BASE + 0x00u)
#define RCC_CFGR REG32(RCC_BASE + 0x08u)
#define RCC_PLLCFGR REG32(RCC_BASE + 0x0Cu)
#define RCC_AHB2ENR REG32(RCC_BASE + 0x4Cu)
#define RCC_APB1ENR1 REG32(RCC_BASE + 0x58u)
#define RCC_APB1ENR2 REG32(RCC_BASE + 0x5Cu)
#define RCC_CCIPR REG32(RCC_BASE + 0x88u)
#define RCC_CR_PLLON (1u << 24)
#define RCC_CR_PLLRDY (1u << 25)
#define RCC_CFGR_SW_MASK 3u
#define RCC_CFGR_SW_PLL 3u
#define RCC_CFGR_SWS_SHIFT 2u
#define RCC_CFGR_HPRE_MASK (0xFu << 4)
#define RCC_CFGR_HPRE_DIV2 (0x8u << 4)
#define RCC_PLLCFGR_SRC_MSI 1u
#define RCC_PLLCFGR_PLLREN (1u << 24)
#define RCC_APB1ENR1_PWREN (1u << 28)
#define RCC_APB1ENR2_LPUART1EN (1u << 0)
#define RCC_CCIPR_LPUART1SEL_SHIFT 10u /* 00 = PCLK1 */

/* PWR */
#define PWR_BASE 0x40007000u
#define PWR_CR1 REG32(PWR_BASE + 0x00u)
#define PWR_CR2 REG32(PWR_BASE + 0x04u)
#define PWR_SR2 REG32(PWR_BASE + 0x14u)
#define PWR_CR5 REG32(PWR_BASE + 0x80u)
#define PWR_CR1_VOS_MASK (3u << 9)
#define PWR_CR1_VOS_RANGE1 (1u << 9)
#define PWR_CR2_IOSV (1u << 9)     /* VDDIO2 (port G) valid */
#define PWR_SR2_VOSF (1u << 10)    /* voltage scaling in progress */
#define PWR_CR5_R1MODE (1u << 8)   /* 1 = range 1 normal, 0 = range 1 boost */

/* FLASH access control */
#define FLASH_ACR REG32(0x40022000u)
#define FLASH_ACR_LATENCY_MASK 0xFu
#define FLASH_ACR_PRFTEN (1u << 8)
#define FLASH_ACR_ICEN (1u << 9)
#define FLASH_ACR_DCEN (1u << 10)

/* GPIO port n (A = 0 .. I = 8), AHB2 */
#define GPIO_BASE(n) (0x48000000u + 0x400u * (uint32_t)(n))
#define GPIO_MODER(n) REG32(GPIO_BASE(n) + 0x00u)
#define GPIO_OSPEEDR(n) REG32(GPIO_BASE(n) + 0x08u)
#define GPIO_PUPDR(n) REG32(GPIO_BASE(n) + 0x0Cu)
#define GPIO_AFR(n, i) REG32(GPIO_BASE(n) + 0x20u + 4u * (uint32_t)(i))

/* LPUART1 (the USART v2 register layout: ISR/ICR/RDR/TDR) */
#define LPUART1_BASE 0x40008000u
#define LPUART_IRQn 70u
#define UART_CR1 REG32(LPUART1_BASE + 0x00u)
#define UART_CR2 REG32(LPUART1_BASE + 0x04u)
#define UART_CR3 REG32(LPUART1_BASE + 0x08u)
#define UART_BRR REG32(LPUART1_BASE + 0x0Cu)
#define UART_ISR REG32(LPUART1_BASE + 0x1Cu)
#define UART_ICR REG32(LPUART1_BASE + 0x20u)
#define UART_RDR REG32(LPUART1_BASE + 0x24u)
#define UART_TDR REG32(LPUART1_BASE + 0x28u)
#define UART_CR1_UE (1u << 0)
#define UART_CR1_RE (1u << 2)
#define UART_CR1_TE (1u << 3)
#define UART_CR1_RXNEIE (1u << 5)
#define UART_ISR_ORE (1u << 3)
#define UART_ISR_RXNE (1u << 5)
#define UART_ISR_TC (1u << 6)
#define UART_ISR_TXE (1u << 7)
#define UART_ICR_ORECF (1u << 3)
/* LPUART: BRR = 256 * f_ck / baud (RM0432 "LPUART baud rate generation"), valid for
 * 3 * baud <= f_ck <= 4096 * baud and BRR >= 0x300. PCLK1 = SYSCLK (APB1 prescaler 1). */
#define L4_LPUART_BRR(fck, baud) ((uint32_t)((256ull * (fck) + (baud) / 2u) / (baud)))

#endif
