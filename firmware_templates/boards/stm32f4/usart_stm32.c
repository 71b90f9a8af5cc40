/* STM32F2/F4 USART (SR/DR/BRR/CR1 layout) for the host link: interrupt-driven RX
 * into a ring that never drops (when it is full the USART interrupt is masked in the
 * NVIC and RXNEIE cleared; the byte waits in DR, the host's credits/acks keep it from
 * overrunning), polled TX. Pins: RCC clock enables and GPIO alternate function as a
 * real board needs them (QEMU's netduinoplus2 ignores RCC/GPIO writes). */
#include "stm32f4.h"
#include "board.h"

#define RING 256u
static volatile uint8_t ring[RING];
static volatile uint32_t head, tail; /* head: ISR writes, tail: thread reads */
static volatile uint8_t stalled;

static void rx_irq_off(void) {
    USART_CR1 &= ~USART_CR1_RXNEIE;
    NVIC_ICER(USART_IRQn / 32u) = 1u << (USART_IRQn % 32u);
    stalled = 1;
}

void USART_IRQHandler(void) {
    uint32_t sr;
    while (((sr = USART_SR) & (USART_SR_RXNE | USART_SR_ORE)) && head - tail < RING) {
        ring[head % RING] = (uint8_t)USART_DR; /* reading DR clears RXNE (and ORE after SR) */
        head++;
    }
    if (head - tail >= RING) rx_irq_off();
}

static void pin_af(uint32_t port, uint32_t pin, uint32_t af) {
    GPIO_MODER(port) = (GPIO_MODER(port) & ~(3u << (2u * pin))) | (2u << (2u * pin));
    GPIO_OSPEEDR(port) |= 2u << (2u * pin);                               /* fast */
    GPIO_PUPDR(port) = (GPIO_PUPDR(port) & ~(3u << (2u * pin))) | (1u << (2u * pin)); /* pull-up */
    GPIO_AFR(port, pin / 8u) = (GPIO_AFR(port, pin / 8u) & ~(0xFu << (4u * (pin % 8u)))) |
                               (af << (4u * (pin % 8u)));
}

void board_uart_init(void) {
    RCC_AHB1ENR |= 1u << STM32_UART_PORT; /* GPIOxEN */
    USART_RCC_ENR |= USART_RCC_BIT;
    (void)USART_RCC_ENR; /* read back: the clock is on before the first register access */
    pin_af(STM32_UART_PORT, STM32_UART_TX_PIN, STM32_UART_AF);
    pin_af(STM32_UART_PORT, STM32_UART_RX_PIN, STM32_UART_AF);
    USART_CR1 = 0;
    USART_CR2 = 0; /* 1 stop bit */
    USART_CR3 = 0; /* no flow control */
    /* Oversampling by 16: BRR = f_ck / baud, rounded (16 MHz / 115200 = 138.9 -> 139,
     * 0.08 % fast). QEMU ignores BRR. */
    USART_BRR = (STM32_UART_CLK_HZ + MCU_UART_BAUD / 2u) / MCU_UART_BAUD;
    USART_CR1 = USART_CR1_UE | USART_CR1_TE | USART_CR1_RE | USART_CR1_RXNEIE;
    (void)USART_SR; /* QEMU: SR/DR reads ask the chardev for input (like mps2's boot race) */
    NVIC_ISER(USART_IRQn / 32u) = 1u << (USART_IRQn % 32u);
    /* Ready mark: one frame delimiter (0x00; an empty frame to the host's reader).
     * QEMU's STM32 USART discards host bytes until UE and RE are set, so the host waits
     * for this byte before its first request ([launch] wait_ready in the board TOML);
     * on a real board it just resynchronises the host's frame reader. */
    USART_DR = 0x00u;
}

uint8_t board_uart_getc(void) {
    for (;;) {
        uint32_t p = irq_save();
        if (head != tail) {
            uint8_t c = ring[tail % RING];
            tail++;
            if (stalled) {
                stalled = 0;
                USART_CR1 |= USART_CR1_RXNEIE;
                NVIC_ISER(USART_IRQn / 32u) = 1u << (USART_IRQn % 32u);
            }
            irq_restore(p);
            return c;
        }
        if (USART_SR & USART_SR_RXNE) { /* arrived while the interrupt was masked */
            uint8_t c = (uint8_t)USART_DR;
            irq_restore(p);
            return c;
        }
        /* Sleep until an interrupt is pending (taken once PRIMASK is restored). */
        __asm volatile("wfi");
        irq_restore(p);
    }
}

void board_uart_write(const uint8_t *d, uint32_t n) {
    while (n--) {
        while (!(USART_SR & USART_SR_TXE)) {
        }
        USART_DR = *d++;
    }
}

void board_uart_flush(void) {
    while (!(USART_SR & USART_SR_TC)) { /* last byte fully shifted out */
    }
}
