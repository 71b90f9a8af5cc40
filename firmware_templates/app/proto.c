/* Device end of protocol v1: COBS framing, CRC-32, dispatch, duplicate cache. */
#include "mcu_proto.h"
#include "board.h"
#include "mcu_util.h"

mcu_proto_stats_t mcu_stats;

/* Encoded frame bytes of one request (COBS adds 1 byte per 254 + 1). */
#define RX_CAP (MCU_MAX_FRAME + MCU_MAX_FRAME / 254u + 2u)
static uint8_t rx_buf[RX_CAP];
static uint32_t rx_len;
static uint8_t rx_discard; /* frame too long: drop bytes up to the next delimiter */

/* Decoded response; kept after sending so a retried request gets it again. */
static uint8_t tx_buf[MCU_MAX_FRAME];
static uint32_t tx_len;
static uint8_t cache_valid;
static uint16_t cache_seq;
static uint32_t cache_req_crc;

/* Registries filled by MCU_HANDLER / MCU_STREAM (linker-collected sections). */
extern const mcu_handler_entry_t __start_mcu_handlers[], __stop_mcu_handlers[];
extern const mcu_stream_t __start_mcu_streams[], __stop_mcu_streams[];

static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};

uint32_t mcu_crc32_update(uint32_t crc, const uint8_t *d, size_t n) {
    crc = ~crc;
    while (n--) {
        crc ^= *d++;
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
    }
    return ~crc;
}

void mcu_proto_init(void) {
    rx_len = 0;
    rx_discard = 0;
    cache_valid = 0;
    memset(&mcu_stats, 0, sizeof mcu_stats);
}

const mcu_stream_t *mcu_find_stream(uint8_t type) {
    const mcu_stream_t *s;
    for (s = __start_mcu_streams; s < __stop_mcu_streams; s++)
        if (s->type == type) return s;
    return 0;
}

static mcu_handler_fn find_handler(uint8_t type) {
    const mcu_handler_entry_t *h;
    for (h = __start_mcu_handlers; h < __stop_mcu_handlers; h++)
        if (h->type == type) return h->fn;
    return 0;
}

/* COBS-encode tx_buf[0..tx_len) straight to the UART, then the delimiter. */
static void send_cached(void) {
    uint32_t i = 0;
    uint8_t zero = 0;
    for (;;) {
        uint32_t j = i;
        uint8_t code;
        while (j < tx_len && tx_buf[j] != 0 && j - i < 254u) j++;
        code = (uint8_t)(j - i + 1u);
        board_uart_write(&code, 1);
        board_uart_write(tx_buf + i, j - i);
        if (j >= tx_len) break;
        i = (code == 0xFFu) ? j : j + 1u; /* a full block implies no zero */
    }
    board_uart_write(&zero, 1);
    board_uart_flush();
    mcu_stats.tx_frames++;
}

static void respond(uint8_t type, uint16_t seq, uint8_t status, uint16_t len, uint8_t flags) {
    uint32_t crc;
    tx_buf[0] = MCU_PROTO_VERSION;
    tx_buf[1] = type;
    tx_buf[2] = (uint8_t)(MCU_FLAG_RESPONSE | flags);
    tx_buf[3] = status;
    mcu_put_u16(tx_buf + 4, seq);
    mcu_put_u16(tx_buf + 6, len);
    crc = mcu_crc32_update(0, tx_buf, MCU_HDR_SIZE + len);
    mcu_put_u32(tx_buf + MCU_HDR_SIZE + len, crc);
    tx_len = MCU_HDR_SIZE + len + MCU_CRC_SIZE;
    send_cached();
}

/* In-place COBS decode; returns decoded length or -1 on a malformed block. */
static int32_t cobs_decode(uint8_t *buf, uint32_t n) {
    uint32_t in = 0, out = 0;
    while (in < n) {
        uint8_t code = buf[in++];
        uint32_t k;
        if (code == 0) return -1;
        if (in + code - 1u > n) return -1;
        for (k = 1; k < code; k++) buf[out++] = buf[in++];
        if (code != 0xFFu && in < n) buf[out++] = 0;
    }
    return (int32_t)out;
}

static void handle_frame(uint8_t *f, uint32_t n) {
    uint16_t len, seq;
    uint32_t crc;
    uint8_t type, status;
    mcu_handler_fn fn;
    mcu_msg_t req;
    mcu_reply_t rep;

    if (n < MCU_HDR_SIZE + MCU_CRC_SIZE) { mcu_stats.bad_frame++; return; }
    len = mcu_get_u16(f + 6);
    if (len > MCU_MAX_PAYLOAD) { mcu_stats.oversized++; return; }
    if ((uint32_t)len + MCU_HDR_SIZE + MCU_CRC_SIZE != n) { mcu_stats.bad_frame++; return; }
    crc = mcu_crc32_update(0, f, MCU_HDR_SIZE + len);
    if (crc != mcu_get_u32(f + MCU_HDR_SIZE + len)) { mcu_stats.bad_crc++; return; }
    if (f[0] != MCU_PROTO_VERSION || (f[2] & MCU_FLAG_RESPONSE)) { mcu_stats.bad_frame++; return; }
    mcu_stats.rx_frames++;
    type = f[1];
    seq = mcu_get_u16(f + 4);

    if (cache_valid && seq == cache_seq && crc == cache_req_crc) {
        /* A retry of the last request: its response got lost. Do not run it again. */
        mcu_stats.duplicates++;
        tx_buf[2] |= MCU_FLAG_DUPLICATE;
        mcu_put_u32(tx_buf + tx_len - MCU_CRC_SIZE, mcu_crc32_update(0, tx_buf, tx_len - MCU_CRC_SIZE));
        send_cached();
        return;
    }

    req.type = type;
    req.seq = seq;
    req.data = f + MCU_HDR_SIZE;
    req.len = len;
    rep.data = tx_buf + MCU_HDR_SIZE;
    rep.cap = MCU_MAX_PAYLOAD;
    rep.len = 0;
    fn = find_handler(type);
    if (!fn) {
        mcu_stats.unknown_type++;
        status = MCU_ST_UNKNOWN_TYPE;
    } else {
        /* rx_buf and tx_buf are distinct, so a handler may read req while writing rep. */
        status = fn(&req, &rep);
        if (rep.len > rep.cap) { rep.len = 0; status = MCU_ST_INTERNAL; }
    }
    cache_valid = 1;
    cache_seq = seq;
    cache_req_crc = crc;
    respond(type, seq, status, rep.len, 0);
}

void mcu_proto_rx_byte(uint8_t b) {
    if (b == 0) {
        if (rx_discard) {
            rx_discard = 0;
        } else if (rx_len > 0) {
            int32_t n = cobs_decode(rx_buf, rx_len);
            if (n < 0) mcu_stats.bad_frame++;
            else handle_frame(rx_buf, (uint32_t)n);
        }
        rx_len = 0;
        return;
    }
    if (rx_discard) return;
    if (rx_len >= RX_CAP) {
        mcu_stats.oversized++;
        rx_discard = 1;
        rx_len = 0;
        return;
    }
    rx_buf[rx_len++] = b;
}
