/* nRF52840 UARTE0 for the host link (nRF52840-DK: TX P0.06, RX P0.08, the J-Link VCP),
 * 115200 8N1, no flow control. EasyDMA only reads and writes RAM: RX lands one byte at
 * a time in a RAM cell (ENDRX interrupt -> ring, STARTRX again); while the ring is full
 * RX is not restarted and the UARTE's 4-byte RX FIFO holds what arrives (the host's
 * credits keep it from overrunning). TX copies through a RAM buffer and waits ENDTX. */
#include "nrf52.h"
#include "board.h"

#define RING 256u
static volatile uint8_t ring[RING];
static volatile uint32_t head, tail;
static volatile uint8_t stalled;
static volatile uint8_t rx_cell;
static uint8_t tx_buf[64];

static void rx_start(void) {
    UARTE_RXD_PTR = (uint32_t)(uintptr_t)&rx_cell;
    UARTE_RXD_MAXCNT = 1;
    UARTE_TASKS_STARTRX = 1;
}

void UARTE0_IRQHandler(void) {
    if (UARTE_EVENTS_ERROR) {
        UARTE_EVENTS_ERROR = 0;
        UARTE_ERRORSRC = UARTE_ERRORSRC; /* write 1 to clear */
    }
    if (UARTE_EVENTS_ENDRX) {
        UARTE_EVENTS_ENDRX = 0;
        ring[head % RING] = rx_cell;
        head++;
        if (head - tail < RING) rx_start();
        else stalled = 1;
    }
}

void board_uart_init(void) {
    P0_OUTSET = 1u << NRF_UART_TX_PIN; /* idle high before the UARTE takes the pin */
    P0_DIRSET = 1u << NRF_UART_TX_PIN;
    P0_DIRCLR = 1u << NRF_UART_RX_PIN;
    P0_PIN_CNF(NRF_UART_RX_PIN) = 0; /* input, buffer connected, no pull */
    UARTE_PSEL_TXD = NRF_UART_TX_PIN;
    UARTE_PSEL_RXD = NRF_UART_RX_PIN;
    UARTE_PSEL_RTS = UARTE_PSEL_DISCONNECTED;
    UARTE_PSEL_CTS = UARTE_PSEL_DISCONNECTED;
    UARTE_BAUDRATE = UARTE_BAUD_115200;
    UARTE_CONFIG = 0; /* no parity, no hardware flow control, one stop bit */
    UARTE_ENABLE = UARTE_ENABLE_ON;
    UARTE_EVENTS_ENDRX = 0;
    UARTE_INTENSET = UARTE_INT_ENDRX;
    NVIC_ISER(UARTE_IRQn / 32u) = 1u << (UARTE_IRQn % 32u);
    rx_start();
    tx_buf[0] = 0x00u; /* ready mark: a frame delimiter */
    UARTE_EVENTS_ENDTX = 0;
    UARTE_TXD_PTR = (uint32_t)(uintptr_t)tx_buf;
    UARTE_TXD_MAXCNT = 1;
    UARTE_TASKS_STARTTX = 1;
    while (!UARTE_EVENTS_ENDTX) {
    }
}

uint8_t board_uart_getc(void) {
    for (;;) {
        uint32_t p = irq_save();
        if (head != tail) {
            uint8_t c = ring[tail % RING];
            tail++;
            if (stalled) {
                stalled = 0;
                rx_start();
            }
            irq_restore(p);
            return c;
        }
        __asm volatile("wfi");
        irq_restore(p);
    }
}

void board_uart_write(const uint8_t *d, uint32_t n) {
    while (n) {
        uint32_t k = n < sizeof tx_buf ? n : (uint32_t)sizeof tx_buf, i;
        for (i = 0; i < k; i++) tx_buf[i] = d[i];
        UARTE_EVENTS_ENDTX = 0;
        UARTE_TXD_PTR = (uint32_t)(uintptr_t)tx_buf;
        UARTE_TXD_MAXCNT = k;
        UARTE_TASKS_STARTTX = 1;
        while (!UARTE_EVENTS_ENDTX) { /* every byte out of the buffer */
        }
        d += k;
        n -= k;
    }
}

void board_uart_flush(void) {} /* writes complete before they return */
