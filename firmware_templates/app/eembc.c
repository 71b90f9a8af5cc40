/* MLPerf Tiny / EEMBC benchmark text protocol on the host link, over model_iface.h.
 * Built instead of the binary protocol engine when MCU_PROTOCOL_EEMBC is defined
 * (`mcu build MODEL --protocol eembc`); main.c then calls mcu_eembc_main().
 *
 * Commands end in '%', arguments are separated by spaces; after each command the
 * device prints its answer lines and "m-ready\r\n":
 *   name%          m-name-dut-[VENDOR]
 *   profile%       m-profile-[FIRMWARE VERSION]  m-model-[MODEL]
 *   help%          the command list
 *   timestamp%     m-lap-us-N
 *   db load N%     m-[Expecting N bytes]            (N <= MCU_EEMBC_DB_SIZE)
 *   db HEX..%      bytes as hex (the runner sends 31 a command); m-load-done at N
 *   db print%      m-buffer-xx-xx-..  (8 bytes a line)
 *   infer N [W]%   m-warmup-start-W m-warmup-done m-infer-start-N m-lap-us-T0
 *                  m-lap-us-T1 m-infer-done, then the results (W defaults to 10)
 *   results%       m-results-[f,f,...]   the output dequantized, %0.3f
 *                  m-results-int8-[q,q,...]  the raw int8 output (for bit-exact checks)
 * Unknown commands: e-[Unknown command: CMD]. The db bytes are the model's int8
 * input as raw bytes; they are copied into the model input before every inference
 * (the arena may reuse the input buffer). Times come from board_ticks(): under QEMU
 * -icount they are virtual microseconds (1 instruction = 1 ns). */
#ifdef MCU_PROTOCOL_EEMBC
#include <stdint.h>

#include "board.h"
#include "mcu_proto.h"
#include "mcu_util.h"
#include "model_iface.h"

#ifndef MCU_EEMBC_DB_SIZE
#define MCU_EEMBC_DB_SIZE 4096u
#endif
#ifndef MCU_EEMBC_VENDOR
#define MCU_EEMBC_VENDOR "mcu"
#endif
#define EE_CMD_SIZE 80u
#define EE_FW_VERSION "ULPMark for tinyML Firmware V0.0.1"

int mcu_eembc_main(void);

/* Output quantization for the dequantized results line; the build generates strong
 * definitions for the model. Scale 0 = unknown: the float line prints raw values. */
__attribute__((weak)) float mcu_eembc_output_scale(void) { return 0.0f; }
__attribute__((weak)) int32_t mcu_eembc_output_zero_point(void) { return 0; }
__attribute__((weak)) const char *mcu_eembc_model_version(void) { return model_name(); }

static char g_cmd[EE_CMD_SIZE + 1];
static uint32_t g_cmd_pos;
static uint8_t g_db[MCU_EEMBC_DB_SIZE];
static uint32_t g_db_size, g_db_pos;

/* ---- output --------------------------------------------------------------- */
static void ee_puts(const char *s) { board_uart_write((const uint8_t *)s, (uint32_t)strlen(s)); }

static void ee_putu(uint64_t v) {
    char b[24];
    int i = (int)sizeof b;
    b[--i] = 0;
    do {
        b[--i] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v && i > 0);
    ee_puts(&b[i]);
}

static void ee_puti(int32_t v) {
    if (v < 0) {
        ee_puts("-");
        ee_putu((uint64_t)(-(int64_t)v));
    } else {
        ee_putu((uint64_t)v);
    }
}

static void ee_putf3(float f) { /* %0.3f */
    uint64_t m;
    if (f < 0.0f) {
        ee_puts("-");
        f = -f;
    }
    m = (uint64_t)((double)f * 1000.0 + 0.5);
    ee_putu(m / 1000u);
    ee_puts(".");
    ee_putu((m / 100u) % 10u);
    ee_putu((m / 10u) % 10u);
    ee_putu(m % 10u);
}

static void ee_puthex2(uint8_t v) {
    static const char hx[] = "0123456789abcdef";
    char b[3] = {hx[v >> 4], hx[v & 15u], 0};
    ee_puts(b);
}

static void ee_line(const char *a, const char *b, const char *c) {
    ee_puts(a);
    if (b) ee_puts(b);
    if (c) ee_puts(c);
    ee_puts("\r\n");
}

/* ---- tokens ------------------------------------------------------------------ */
static char *g_tok_next;

static char *ee_tok(char *s) { /* strtok(s, " ") */
    char *t;
    if (s) g_tok_next = s;
    if (!g_tok_next) return 0;
    while (*g_tok_next == ' ') g_tok_next++;
    if (!*g_tok_next) return 0;
    t = g_tok_next;
    while (*g_tok_next && *g_tok_next != ' ') g_tok_next++;
    if (*g_tok_next) *g_tok_next++ = 0;
    return t;
}

static int ee_eq(const char *a, const char *b) {
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

static int32_t ee_atoi(const char *s) {
    int32_t v = 0, neg = 0;
    if (*s == '-') {
        neg = 1;
        s++;
    }
    while (*s >= '0' && *s <= '9') v = v * 10 + (*s++ - '0');
    return neg ? -v : v;
}

static int ee_hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* ---- timing --------------------------------------------------------------------- */
static uint64_t ee_us(void) {
#if MCU_TICK_HZ
    uint64_t t = board_ticks();
    return t / ((uint64_t)MCU_TICK_HZ / 1000000u ? (uint64_t)MCU_TICK_HZ / 1000000u : 1u);
#else
    return board_ticks();
#endif
}

static void ee_timestamp(void) {
    ee_puts("m-lap-us-");
    ee_putu(ee_us());
    ee_puts("\r\n");
}

/* ---- commands ------------------------------------------------------------------- */
static void ee_results(void) {
    const int8_t *out = (const int8_t *)model_output();
    uint32_t n = model_output_size(), i;
    float s = mcu_eembc_output_scale();
    int32_t zp = mcu_eembc_output_zero_point();
    if (!out) {
        ee_line("e-[No model]", 0, 0);
        return;
    }
    ee_puts("m-results-[");
    for (i = 0; i < n; i++) {
        if (s > 0.0f) ee_putf3(s * (float)((int32_t)out[i] - zp));
        else ee_puti(out[i]);
        if (i + 1 < n) ee_puts(",");
    }
    ee_puts("]\r\n");
    ee_puts("m-results-int8-[");
    for (i = 0; i < n; i++) {
        ee_puti(out[i]);
        if (i + 1 < n) ee_puts(",");
    }
    ee_puts("]\r\n");
}

static int ee_load_and_invoke(void) {
    uint8_t *in = model_input();
    uint32_t n = model_input_size();
    if (!in) return -1;
    memcpy(in, g_db, g_db_pos < n ? g_db_pos : n);
    if (g_db_pos < n) memset(in + g_db_pos, 0, n - g_db_pos);
    return model_invoke() == MCU_ST_OK ? 0 : -1;
}

static void ee_infer(uint32_t n, uint32_t w) {
    ee_puts("m-warmup-start-");
    ee_putu(w);
    ee_puts("\r\n");
    while (w-- > 0u) {
        if (ee_load_and_invoke()) {
            ee_line("e-[Inference failed]", 0, 0);
            return;
        }
    }
    ee_line("m-warmup-done", 0, 0);
    ee_puts("m-infer-start-");
    ee_putu(n);
    ee_puts("\r\n");
    ee_timestamp();
    while (n-- > 0u) {
        if (ee_load_and_invoke()) {
            ee_line("e-[Inference failed]", 0, 0);
            return;
        }
    }
    ee_timestamp();
    ee_line("m-infer-done", 0, 0);
    ee_results();
}

static void ee_db(void) {
    char *p = ee_tok(0);
    if (!p) {
        ee_line("e-[Command 'db' requires a subcommand]", 0, 0);
    } else if (ee_eq(p, "load")) {
        char *a = ee_tok(0);
        int32_t n = a ? ee_atoi(a) : 0;
        if (!a) {
            ee_line("e-[Command 'db load' requires the # of bytes]", 0, 0);
        } else if (n <= 0) {
            ee_line("e-[Command 'db load' must be >0 bytes]", 0, 0);
        } else if ((uint32_t)n > MCU_EEMBC_DB_SIZE) {
            ee_puts("e-[Supplied buffer size ");
            ee_putu((uint32_t)n);
            ee_puts(" exceeds maximum of ");
            ee_putu(MCU_EEMBC_DB_SIZE);
            ee_puts("]\r\n");
        } else {
            g_db_size = (uint32_t)n;
            g_db_pos = 0;
            ee_puts("m-[Expecting ");
            ee_putu(g_db_size);
            ee_puts(" bytes]\r\n");
        }
    } else if (ee_eq(p, "print")) {
        uint32_t i;
        for (i = 0; i < g_db_size; i++) {
            if (i % 8u == 0u) ee_puts("m-buffer-");
            ee_puthex2(g_db[i]);
            ee_puts((i + 1u) % 8u == 0u || i + 1u == g_db_size ? "\r\n" : "-");
        }
    } else {
        uint32_t k, len = (uint32_t)strlen(p);
        if (g_db_size == 0u) {
            ee_line("e-[Buffer not allocated]", 0, 0);
            return;
        }
        if (len & 1u) {
            ee_line("e-[Insufficent number of hex digits]", 0, 0);
            return;
        }
        for (k = 0; k < len; k += 2u) {
            int hi = ee_hexval(p[k]), lo = ee_hexval(p[k + 1u]);
            if (hi < 0 || lo < 0) {
                char bad[3] = {p[k], p[k + 1u], 0};
                ee_line("e-[Invalid hex digit '", bad, "']");
                return;
            }
            if (g_db_pos < g_db_size) g_db[g_db_pos++] = (uint8_t)(hi * 16 + lo);
            if (g_db_pos == g_db_size) {
                ee_line("m-load-done", 0, 0);
                return; /* the rest of the digits is ignored, as the reference does */
            }
        }
    }
}

static void ee_command(char *cmd) {
    char *tok = ee_tok(cmd);
    if (!tok) {
        /* empty command: just m-ready */
    } else if (ee_eq(tok, "name")) {
        ee_line("m-name-dut-[", MCU_EEMBC_VENDOR, "]");
    } else if (ee_eq(tok, "timestamp")) {
        ee_timestamp();
    } else if (ee_eq(tok, "profile")) {
        ee_line("m-profile-[", EE_FW_VERSION, "]");
        ee_line("m-model-[", mcu_eembc_model_version(), "]");
    } else if (ee_eq(tok, "help")) {
        ee_line(EE_FW_VERSION, 0, 0);
        ee_line("", 0, 0);
        ee_line("help         : Print this information", 0, 0);
        ee_line("name         : Print the name of the device", 0, 0);
        ee_line("timestamp    : Generate a timestamp", 0, 0);
        ee_line("db SUBCMD    : Manipulate a generic byte buffer", 0, 0);
        ee_line("  load N     : Allocate N bytes and set load counter", 0, 0);
        ee_line("  db HH[HH]* : Load 8-bit hex byte(s) until N bytes", 0, 0);
        ee_line("  print      : Print the buffer as hex", 0, 0);
        ee_line("infer N [W=10]: Load input, execute N inferences after W warmup loops", 0, 0);
        ee_line("results      : Return the result vector", 0, 0);
    } else if (ee_eq(tok, "db")) {
        ee_db();
    } else if (ee_eq(tok, "infer")) {
        char *a = ee_tok(0), *b = a ? ee_tok(0) : 0;
        int32_t n = a ? ee_atoi(a) : 1, w = b ? ee_atoi(b) : 10;
        if (a && n <= 0) ee_line("e-[Inference iterations must be >0]", 0, 0);
        else if (b && w < 0) ee_line("e-[Inference warmup must be >=0]", 0, 0);
        else if (!model_input()) ee_line("e-[No model]", 0, 0);
        else ee_infer((uint32_t)n, (uint32_t)w);
    } else if (ee_eq(tok, "results")) {
        ee_results();
    } else {
        ee_line("e-[Unknown command: ", tok, "]");
    }
    ee_puts("m-ready\r\n");
    board_uart_flush();
}

int mcu_eembc_main(void) {
    board_init();
    board_log("mcu firmware ready (EEMBC protocol): " MCU_BOARD_NAME " " MCU_BUILD_ID);
    ee_puts("m-timestamp-mode-performance\r\n");
    ee_timestamp();
    ee_puts("m-init-done\r\n");
    ee_puts("m-ready\r\n");
    board_uart_flush();
    for (;;) {
        char c = (char)board_uart_getc();
        if (c == '%') {
            g_cmd[g_cmd_pos] = 0;
            g_cmd_pos = 0;
            ee_command(g_cmd);
        } else if (c != '\r' && c != '\n') {
            g_cmd[g_cmd_pos] = c;
            g_cmd_pos = g_cmd_pos >= EE_CMD_SIZE ? EE_CMD_SIZE : g_cmd_pos + 1u;
        }
    }
}
#else
typedef int mcu_eembc_unused_t; /* ISO C: a translation unit must not be empty */
#endif
