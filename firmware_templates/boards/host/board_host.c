/* Host "board": the device firmware compiled natively. The serial link is a
 * TCP server on 127.0.0.1 (one client at a time; a new client may connect
 * after the previous one left). Usage: firmware [--port N] (0 = any free
 * port; --flash FILE backs the emulated weight flash). Once listening it
 * prints "MCU_LISTEN 127.0.0.1 <port>" on stdout. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "board.h"

int mcu_main(void);
extern const char *board_flash_path; /* flash_host.c: file behind the emulated NOR flash */

static int listen_fd = -1, conn_fd = -1;
static unsigned char txb[4096], rxb[4096];
static size_t txn, rxn, rxi;

static void die(const char *what) {
    fprintf(stderr, "host board: %s: %s\n", what, strerror(errno));
    exit(3);
}

static void accept_client(void) {
    int one = 1;
    while (conn_fd < 0) {
        conn_fd = accept(listen_fd, NULL, NULL);
        if (conn_fd < 0 && errno != EINTR) die("accept");
    }
    setsockopt(conn_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void drop_client(void) {
    if (conn_fd >= 0) close(conn_fd);
    conn_fd = -1;
    txn = rxn = rxi = 0;
}

void board_init(void) {}

uint8_t board_uart_getc(void) {
    for (;;) {
        ssize_t r;
        if (rxi < rxn) return rxb[rxi++];
        if (conn_fd < 0) accept_client();
        r = read(conn_fd, rxb, sizeof rxb);
        if (r > 0) {
            rxn = (size_t)r;
            rxi = 0;
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        drop_client(); /* client left: wait for the next one, like a board that keeps running */
    }
}

void board_uart_flush(void) {
    size_t off = 0;
    while (off < txn && conn_fd >= 0) {
        ssize_t w = write(conn_fd, txb + off, txn - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            drop_client();
            break;
        }
        off += (size_t)w;
    }
    txn = 0;
}

void board_uart_write(const uint8_t *d, uint32_t n) {
    while (n--) {
        if (txn == sizeof txb) board_uart_flush();
        txb[txn++] = *d++;
    }
}

uint64_t board_ticks(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void board_exit(int code) {
    board_uart_flush();
    if (conn_fd >= 0) shutdown(conn_fd, SHUT_WR);
    exit(code);
}

void board_log(const char *s) { fprintf(stderr, "%s\n", s); }
uint32_t board_flash_used(void) { return 0; }
uint32_t board_ram_used(void) { return 0; }

int main(int argc, char **argv) {
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    int one = 1, port = 0, i;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--flash") == 0 && i + 1 < argc) board_flash_path = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--port N] [--flash FILE]\n", argv[0]);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (listen_fd < 0) die("socket");
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((unsigned short)port);
    if (bind(listen_fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(listen_fd, 1) < 0) die("listen");
    if (getsockname(listen_fd, (struct sockaddr *)&a, &alen) < 0) die("getsockname");
    printf("MCU_LISTEN 127.0.0.1 %u\n", (unsigned)ntohs(a.sin_port));
    fflush(stdout);
    return mcu_main();
}
