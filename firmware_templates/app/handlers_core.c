/* Core messages: INFO, ECHO, STATS, EXIT, TICKS and chunked transfers (XFER_*). */
#include "mcu_proto.h"
#include "board.h"
#include "model_iface.h"
#include "mcu_util.h"

/* ---- INFO: TLV records ---- */
static uint16_t tlv(mcu_reply_t *rep, uint8_t tag, const void *v, uint32_t n) {
    if (n > 255u || rep->len + 2u + n > rep->cap) return 0;
    rep->data[rep->len] = tag;
    rep->data[rep->len + 1u] = (uint8_t)n;
    if (n) memcpy(rep->data + rep->len + 2u, v, n);
    rep->len = (uint16_t)(rep->len + 2u + n);
    return 1;
}
static void tlv_u32(mcu_reply_t *rep, uint8_t tag, uint32_t v) {
    uint8_t b[4];
    mcu_put_u32(b, v);
    tlv(rep, tag, b, 4);
}
static void tlv_str(mcu_reply_t *rep, uint8_t tag, const char *s) { tlv(rep, tag, s, strlen(s)); }

static uint8_t on_info(const mcu_msg_t *req, mcu_reply_t *rep) {
    uint8_t ver[2] = {MCU_PROTO_VERSION, MCU_PROTO_MINOR};
    uint8_t mp[2];
    uint32_t flags = 0;
    (void)req;
    mcu_put_u16(mp, MCU_MAX_PAYLOAD);
#ifdef MCU_TEST_BUILD
    flags |= MCU_INFO_F_TEST_BUILD | MCU_INFO_F_SEMIHOSTING;
#endif
    if (model_hash()) flags |= MCU_INFO_F_HAS_MODEL;
    tlv(rep, MCU_INFO_PROTO_VERSION, ver, 2);
    tlv_str(rep, MCU_INFO_BOARD, MCU_BOARD_NAME);
    tlv_str(rep, MCU_INFO_BUILD_ID, MCU_BUILD_ID);
    tlv(rep, MCU_INFO_MODEL_HASH, model_hash(), model_hash() ? model_hash_len() : 0u);
    tlv_str(rep, MCU_INFO_MODEL_NAME, model_name());
    tlv_u32(rep, MCU_INFO_FLASH_BUDGET, MCU_FLASH_BUDGET);
    tlv_u32(rep, MCU_INFO_RAM_BUDGET, MCU_RAM_BUDGET);
    tlv_u32(rep, MCU_INFO_FLASH_USED, board_flash_used());
    tlv_u32(rep, MCU_INFO_RAM_USED, board_ram_used());
    tlv(rep, MCU_INFO_MAX_PAYLOAD, mp, 2);
    tlv_u32(rep, MCU_INFO_TICK_HZ, MCU_TICK_HZ);
    tlv_u32(rep, MCU_INFO_INSTR_PER_TICK, MCU_INSTR_PER_TICK);
    tlv_u32(rep, MCU_INFO_MODEL_IN_SIZE, model_input_size());
    tlv_u32(rep, MCU_INFO_MODEL_OUT_SIZE, model_output_size());
    tlv_u32(rep, MCU_INFO_FLAGS, flags);
    if (model_hash() && model_num_levels() > 0u) {   /* switchable subnet levels */
        uint8_t lv[2u + 2u * 32u];
        uint32_t i, n = model_num_levels() > 32u ? 32u : model_num_levels();
        lv[0] = (uint8_t)n;
        lv[1] = (uint8_t)model_level();
        for (i = 0; i < n; i++) mcu_put_u16(lv + 2u + 2u * i, model_level_sparsity(i));
        tlv(rep, MCU_INFO_SUBNETS, lv, 2u + 2u * n);
    }
    return MCU_ST_OK;
}
MCU_HANDLER(MCU_MSG_INFO, on_info);

static uint8_t on_echo(const mcu_msg_t *req, mcu_reply_t *rep) {
    memcpy(rep->data, req->data, req->len);
    rep->len = req->len;
    return MCU_ST_OK;
}
MCU_HANDLER(MCU_MSG_ECHO, on_echo);

static uint8_t on_stats(const mcu_msg_t *req, mcu_reply_t *rep) {
    const uint32_t *s = (const uint32_t *)&mcu_stats;
    uint32_t i, n = sizeof mcu_stats / sizeof(uint32_t);
    (void)req;
    for (i = 0; i < n; i++) mcu_put_u32(rep->data + 4u * i, s[i]);
    rep->len = (uint16_t)(4u * n);
    return MCU_ST_OK;
}
MCU_HANDLER(MCU_MSG_STATS, on_stats);

/* EXIT {u8 code}: answers first, then leaves (semihosting exit / reset). */
static uint8_t exit_code;
static volatile uint8_t exit_pending;
static uint8_t on_exit(const mcu_msg_t *req, mcu_reply_t *rep) {
    (void)rep;
    exit_code = req->len ? req->data[0] : 0u;
    exit_pending = 1;
    return MCU_ST_OK;
}
MCU_HANDLER(MCU_MSG_EXIT, on_exit);
void mcu_core_poll(void) {
    if (exit_pending) board_exit(exit_code);
}

/* TICKS: {u64 ticks, u32 tick_hz, u32 instructions_per_tick} */
static uint8_t on_ticks(const mcu_msg_t *req, mcu_reply_t *rep) {
    uint64_t t = board_ticks();
    (void)req;
    mcu_put_u32(rep->data, (uint32_t)t);
    mcu_put_u32(rep->data + 4, (uint32_t)(t >> 32));
    mcu_put_u32(rep->data + 8, MCU_TICK_HZ);
    mcu_put_u32(rep->data + 12, MCU_INSTR_PER_TICK);
    rep->len = 16;
    return MCU_ST_OK;
}
MCU_HANDLER(MCU_MSG_TICKS, on_ticks);

/* ---- chunked transfers ---- */
static struct {
    const mcu_stream_t *s;
    uint32_t total, next, crc_expect, crc;
} wx;

/* XFER_BEGIN {u8 stream, u32 total, u32 crc32} -> {u16 max_chunk_data} */
static uint8_t on_xfer_begin(const mcu_msg_t *req, mcu_reply_t *rep) {
    const mcu_stream_t *s;
    uint8_t st;
    if (req->len != 9u) return MCU_ST_BAD_LENGTH;
    s = mcu_find_stream(req->data[0]);
    wx.s = 0;
    if (!s || !s->write) return MCU_ST_UNSUPPORTED;
    wx.total = mcu_get_u32(req->data + 1);
    wx.crc_expect = mcu_get_u32(req->data + 5);
    st = s->begin ? s->begin(wx.total) : MCU_ST_OK;
    if (st != MCU_ST_OK) return st;
    wx.s = s;
    wx.next = 0;
    wx.crc = 0;
    mcu_put_u16(rep->data, (uint16_t)(MCU_MAX_PAYLOAD - 5u));
    rep->len = 2;
    return MCU_ST_OK;
}
MCU_HANDLER(MCU_MSG_XFER_BEGIN, on_xfer_begin);

/* XFER_CHUNK {u8 stream, u32 offset, data} -> {u32 next_offset} */
static uint8_t on_xfer_chunk(const mcu_msg_t *req, mcu_reply_t *rep) {
    uint32_t off, n;
    if (req->len < 5u) return MCU_ST_BAD_LENGTH;
    if (!wx.s || wx.s->type != req->data[0]) return MCU_ST_BAD_STATE;
    off = mcu_get_u32(req->data + 1);
    n = req->len - 5u;
    if (off > wx.next) return MCU_ST_BAD_ARG; /* a gap: the host must resend from next */
    if (off == wx.next && n) {                /* off < next: already have it, just ack */
        uint8_t st;
        if (wx.next + n > wx.total) return MCU_ST_TOO_LARGE;
        st = wx.s->write(off, req->data + 5, n);
        if (st != MCU_ST_OK) { wx.s = 0; return st; }
        wx.crc = mcu_crc32_update(wx.crc, req->data + 5, n);
        wx.next += n;
    }
    mcu_put_u32(rep->data, wx.next);
    rep->len = 4;
    return MCU_ST_OK;
}
MCU_HANDLER(MCU_MSG_XFER_CHUNK, on_xfer_chunk);

/* XFER_END {u8 stream} -> {} ; checks length and CRC before the stream's end() */
static uint8_t on_xfer_end(const mcu_msg_t *req, mcu_reply_t *rep) {
    const mcu_stream_t *s = wx.s;
    (void)rep;
    if (req->len != 1u) return MCU_ST_BAD_LENGTH;
    if (!s || s->type != req->data[0]) return MCU_ST_BAD_STATE;
    wx.s = 0;
    if (wx.next != wx.total) return MCU_ST_BAD_STATE;
    if (wx.crc != wx.crc_expect) return MCU_ST_CRC_MISMATCH;
    return s->end ? s->end(wx.total) : MCU_ST_OK;
}
MCU_HANDLER(MCU_MSG_XFER_END, on_xfer_end);

/* XFER_SIZE {u8 stream} -> {u32 size, u32 crc32} */
static uint8_t on_xfer_size(const mcu_msg_t *req, mcu_reply_t *rep) {
    const mcu_stream_t *s;
    uint32_t size, off = 0, crc = 0;
    uint8_t buf[64];
    if (req->len != 1u) return MCU_ST_BAD_LENGTH;
    s = mcu_find_stream(req->data[0]);
    if (!s || !s->size || !s->read) return MCU_ST_UNSUPPORTED;
    size = s->size();
    while (off < size) {
        uint32_t n = size - off < sizeof buf ? size - off : (uint32_t)sizeof buf;
        uint8_t st = s->read(off, buf, n);
        if (st != MCU_ST_OK) return st;
        crc = mcu_crc32_update(crc, buf, n);
        off += n;
    }
    mcu_put_u32(rep->data, size);
    mcu_put_u32(rep->data + 4, crc);
    rep->len = 8;
    return MCU_ST_OK;
}
MCU_HANDLER(MCU_MSG_XFER_SIZE, on_xfer_size);

/* XFER_READ {u8 stream, u32 offset, u16 len} -> data */
static uint8_t on_xfer_read(const mcu_msg_t *req, mcu_reply_t *rep) {
    const mcu_stream_t *s;
    uint32_t off, n, size;
    uint8_t st;
    if (req->len != 7u) return MCU_ST_BAD_LENGTH;
    s = mcu_find_stream(req->data[0]);
    if (!s || !s->size || !s->read) return MCU_ST_UNSUPPORTED;
    off = mcu_get_u32(req->data + 1);
    n = mcu_get_u16(req->data + 5);
    size = s->size();
    if (off > size) return MCU_ST_BAD_ARG;
    if (n > size - off) n = size - off;
    if (n > rep->cap) n = rep->cap;
    st = s->read(off, rep->data, n);
    if (st != MCU_ST_OK) return st;
    rep->len = (uint16_t)n;
    return MCU_ST_OK;
}
MCU_HANDLER(MCU_MSG_XFER_READ, on_xfer_read);
