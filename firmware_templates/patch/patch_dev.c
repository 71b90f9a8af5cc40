/* Partial weight patches on the device: boot recovery, staging, verify, A/B apply,
 * commit, and the protocol handlers 0x40-0x4F. Spec: docs/patch-device.md.
 *
 * Power-loss argument in short: the active slot is never written while it is
 * active; a new store is built in the other slot, its hash checked against the
 * patch's target, and only then a commit record (CRC-protected, append-only) makes
 * it active. Boot picks the highest-sequence valid record whose slot hash verifies
 * (or slot A as built). An interruption anywhere leaves the old record (old model)
 * or the new one (new model), nothing in between. */
#include "flash.h"
#include "mcu_proto.h"
#include "mcu_util.h"
#include "patch_dev.h"
#include "sha256.h"

#define PAGE MCU_FLASH_PAGE
#define REC_SIZE 64u
#define RECS_PER_PAGE (PAGE / REC_SIZE)
#define REC_MAGIC 0x4355434Du   /* "MCUC" */
#define STAGE_MAGIC 0x5355434Du /* "MCUS" */
#define PROG_FIRST 64u          /* progress entries in the staging header page */
#define PROG_MAX ((PAGE - PROG_FIRST) / 8u)
#define PIECE 256u              /* program granularity of the apply */
#define PATCH_HDR 128u
#define PATCH_TAG 32u
#define MAX_CHUNK (MCU_MAX_PAYLOAD - 4u)

#define TYPE_DELTA 0u
#define TYPE_FULL 1u

static const mcu_patch_cfg_t *const C = &mcu_patch_cfg;

static struct {
    uint8_t inited, valid, slot, area_loaded;
    uint32_t seq, last_seq;
    uint8_t hash[32];
    uint8_t key_id[4];
    uint32_t meta_page, meta_next;
    uint32_t boots_fallback; /* records skipped at boot (slot hash mismatch) */
} ps;

static struct {
    uint8_t active;
    uint32_t total, crc, seq, next, erased_upto, prog_idx;
#if MCU_FLASH_WRITE_UNIT > 1
    uint32_t flushed;                   /* staged bytes programmed (next - tail_n) */
    uint8_t tail[MCU_FLASH_WRITE_UNIT]; /* received, not yet a whole write unit */
    uint32_t tail_n;
#endif
} sg;

static char errmsg[120];

__attribute__((weak)) void mcu_model_weights_changed(void) {}

/* ---- small helpers ---------------------------------------------------------------- */
static uint32_t rd32(const uint8_t *p) { return mcu_get_u32(p); }

static int all_ff(const uint8_t *p, uint32_t n) {
    while (n--)
        if (*p++ != 0xFFu) return 0;
    return 1;
}

static void hexcat(char *out, const uint8_t *b, uint32_t n) {
    static const char hx[] = "0123456789abcdef";
    char *o = out + strlen(out);
    uint32_t i;
    for (i = 0; i < n; i++) {
        *o++ = hx[b[i] >> 4];
        *o++ = hx[b[i] & 15u];
    }
    *o = 0;
}

static void say(const char *a) {
    uint32_t n = strlen(a);
    if (n >= sizeof errmsg) n = sizeof errmsg - 1u;
    memcpy(errmsg, a, n);
    errmsg[n] = 0;
}

static void say_u32(uint32_t v) {
    char d[11], *o = errmsg + strlen(errmsg);
    int n = 0;
    do {
        d[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    while (n) *o++ = d[--n];
    *o = 0;
}

static void say_cat(const char *a) {
    uint32_t n = strlen(errmsg), k = strlen(a);
    if (n + k >= sizeof errmsg) k = sizeof errmsg - 1u - n;
    memcpy(errmsg + n, a, k);
    errmsg[n + k] = 0;
}

static uint8_t fail(mcu_reply_t *rep, uint8_t st) {
    uint32_t n = strlen(errmsg);
    if (rep) {
        if (n > rep->cap) n = rep->cap;
        memcpy(rep->data, errmsg, n);
        rep->len = (uint16_t)n;
    }
    return st;
}

/* ---- store hash ----------------------------------------------------------------------- */
static void slot_hash(uint32_t slot, uint8_t out[32]) {
    const uint8_t *base = flash_ptr(C->slot_off[slot]);
    mcu_sha256_t h;
    uint32_t i;
    mcu_sha256_init(&h);
    mcu_sha256_update(&h, C->structure, 32);
    for (i = 0; i < C->n_tensors; i++) mcu_sha256_update(&h, base + C->tensors[i].offset, C->tensors[i].nbytes);
    mcu_sha256_final(&h, out);
}

/* ---- commit records ----------------------------------------------------------------------
 *  0 u32 magic "MCUC" | 4 u32 seq | 8 u32 slot | 12 u32 0 | 16 hash[32] | 48 8 x 0 |
 * 56 u32 crc32(bytes 0..55) | 60 u32 0 */
static const uint8_t *rec_at(uint32_t page, uint32_t i) {
    return flash_ptr(C->meta_off + page * PAGE + i * REC_SIZE);
}

/* Flash-relative offset of a pointer into the area (flash_readable/flash_erased). */
static uint32_t off_of(const uint8_t *p) { return (uint32_t)(p - flash_ptr(0)); }
/* Erased = may be programmed: all 0xFF and, on ECC flash, no ECC error (a torn write
 * is neither erased nor valid). */
static int erased_at(const uint8_t *p, uint32_t n) { return flash_erased(off_of(p), n); }

static int rec_valid(const uint8_t *r) {
    return flash_readable(off_of(r), REC_SIZE) && rd32(r) == REC_MAGIC &&
           rd32(r + 56) == mcu_crc32_update(0, r, 56) && rd32(r + 8) < 2u;
}

static void boot_scan(void) {
    uint32_t p, i, bound = 0xFFFFFFFFu, best_seq = 0;
    int have_bound = 0;
    uint8_t h[32];
    ps.valid = 0;
    ps.last_seq = C->init_seq;
    ps.meta_page = 0;
    ps.meta_next = 0;
    /* highest valid record: replay bound and append position */
    {
        uint32_t top = 0, top_page = 0;
        int any = 0;
        for (p = 0; p < 2; p++)
            for (i = 0; i < RECS_PER_PAGE; i++) {
                const uint8_t *r = rec_at(p, i);
                if (rec_valid(r) && (!any || rd32(r + 4) > top)) {
                    top = rd32(r + 4);
                    top_page = p;
                    any = 1;
                }
            }
        if (any && top > ps.last_seq) ps.last_seq = top;
        ps.meta_page = top_page;
        for (i = 0; i < RECS_PER_PAGE; i++)
            if (!erased_at(rec_at(top_page, i), REC_SIZE)) ps.meta_next = i + 1u;
    }
    /* active: candidates by descending sequence; the first whose slot verifies */
    for (;;) {
        const uint8_t *best = 0;
        int found = 0;
        for (p = 0; p < 2; p++)
            for (i = 0; i < RECS_PER_PAGE; i++) {
                const uint8_t *r = rec_at(p, i);
                uint32_t s;
                if (!rec_valid(r)) continue;
                s = rd32(r + 4);
                if (have_bound && s >= bound) continue;
                if (!found || s > best_seq) {
                    best = r;
                    best_seq = s;
                    found = 1;
                }
            }
        if (!found || best_seq <= C->init_seq) break;
        slot_hash(rd32(best + 8), h);
        if (mcu_ct_equal(h, best + 16, 32)) {
            ps.valid = 1;
            ps.slot = (uint8_t)rd32(best + 8);
            ps.seq = best_seq;
            memcpy(ps.hash, h, 32);
            return;
        }
        ps.boots_fallback++;
        bound = best_seq;
        have_bound = 1;
    }
    slot_hash(0, h); /* slot A as built */
    if (mcu_ct_equal(h, C->init_hash, 32)) {
        ps.valid = 1;
        ps.slot = 0;
        ps.seq = C->init_seq;
        memcpy(ps.hash, h, 32);
    }
}

static void stage_scan(void) {
    const uint8_t *hd = flash_ptr(C->stage_off);
    uint32_t i;
    memset(&sg, 0, sizeof sg);
    if (!flash_readable(C->stage_off, 20) || rd32(hd) != STAGE_MAGIC ||
        rd32(hd + 16) != mcu_crc32_update(0, hd, 16))
        return;
    sg.active = 1;
    sg.total = rd32(hd + 4);
    sg.crc = rd32(hd + 8);
    sg.seq = rd32(hd + 12);
    for (i = 0; i < PROG_MAX; i++) {
        const uint8_t *e = hd + PROG_FIRST + 8u * i;
        if (erased_at(e, 8)) continue;
        sg.prog_idx = i + 1u;
        if (flash_readable(off_of(e), 8) && (rd32(e) ^ rd32(e + 4)) == 0xFFFFFFFFu && rd32(e) > sg.next &&
            rd32(e) <= sg.total)
            sg.next = rd32(e);
    }
    sg.erased_upto = (sg.next + PAGE - 1u) / PAGE * PAGE;
#if MCU_FLASH_WRITE_UNIT > 1
    sg.flushed = sg.next; /* progress entries record programmed ends only */
#endif
}

static void patch_init(void) {
    uint8_t kid[32];
    static const char kid_prefix[] = "mcu-patch-key-id";
    mcu_sha256_t h;
    if (ps.inited) return;
    ps.inited = 1;
    ps.area_loaded = (uint8_t)flash_init(C->area, C->area_size, C->layout_id);
    mcu_sha256_init(&h);
    mcu_sha256_update(&h, kid_prefix, sizeof kid_prefix - 1u);
    mcu_sha256_update(&h, C->key, 32);
    mcu_sha256_final(&h, kid);
    memcpy(ps.key_id, kid, 4);
    boot_scan();
    stage_scan();
}

const uint8_t *mcu_wstore(void) {
    patch_init();
    return ps.valid ? flash_ptr(C->slot_off[ps.slot]) : 0;
}
const uint8_t *mcu_wstore_hash(void) {
    patch_init();
    return ps.valid ? ps.hash : 0;
}
uint32_t mcu_wstore_seq(void) {
    patch_init();
    return ps.seq;
}

/* ---- patch header ------------------------------------------------------------------------ */
typedef struct {
    uint8_t type, flags;
    uint32_t n_groups, seq, entries, plen;
    const uint8_t *kid, *base, *target, *digest;
} phdr_t;

static uint8_t parse_header(const uint8_t *b, uint32_t total, phdr_t *h) {
    if (rd32(b) != 0x5055434Du /* "MCUP" */) { say("not a patch (bad magic)"); return MCU_ST_PATCH_INVALID; }
    if (mcu_get_u16(b + 4) != 1u) { say("patch format version not supported"); return MCU_ST_PATCH_INVALID; }
    h->type = b[6];
    h->flags = b[9];
    if (h->type > TYPE_FULL) { say("unknown patch type"); return MCU_ST_PATCH_INVALID; }
    if (b[7] != 0u) { say("compressed patch: the device takes uncompressed payloads"); return MCU_ST_UNSUPPORTED; }
    if (b[8] != 1u) { say("unknown tag algorithm"); return MCU_ST_PATCH_INVALID; }
    /* HAS_OLD (bit 0): DELTA with or without old values (roll-forward); FULL never */
    if ((h->flags & ~1u) || (h->type == TYPE_FULL && h->flags)) { say("bad patch flags"); return MCU_ST_PATCH_INVALID; }
    h->n_groups = mcu_get_u16(b + 10);
    h->seq = rd32(b + 12);
    h->entries = rd32(b + 16);
    h->plen = rd32(b + 20);
    if (rd32(b + 24) != h->plen) { say("payload length mismatch"); return MCU_ST_PATCH_INVALID; }
    h->kid = b + 28;
    h->base = b + 32;
    h->target = b + 64;
    h->digest = b + 96;
    if (h->plen > 0xFFFFFFFFu - PATCH_HDR - PATCH_TAG || PATCH_HDR + h->plen + PATCH_TAG != total) {
        say("patch truncated or padded: header says ");
        say_u32(h->plen + PATCH_HDR + PATCH_TAG);
        say_cat(" B, got ");
        say_u32(total);
        return MCU_ST_PATCH_INVALID;
    }
    return MCU_ST_OK;
}

/* Sequence and base: the state checks (BEGIN does them early, APPLY again). */
static uint8_t check_state(const phdr_t *h) {
    if (!ps.valid) { say("device holds no valid weight store"); return MCU_ST_NO_MODEL; }
    if (h->seq <= ps.last_seq) {
        say("sequence ");
        say_u32(h->seq);
        say_cat(" is not above the last applied ");
        say_u32(ps.last_seq);
        say_cat(" (replayed or stale patch)");
        return MCU_ST_REPLAY;
    }
    if (!mcu_ct_equal(h->base, ps.hash, 32)) {
        say("patch is for model ");
        hexcat(errmsg, h->base, 8);
        say_cat(", device holds ");
        hexcat(errmsg, ps.hash, 8);
        say_cat(" (wrong base)");
        return MCU_ST_WRONG_BASE;
    }
    return MCU_ST_OK;
}

/* ---- payload cursor: records in payload order = increasing slot address -------------- */
typedef struct {
    const uint8_t *p;
    uint32_t pos, len;
    uint32_t groups_left, recs_left, entries;
    int32_t last_tensor;
    uint32_t tensor, nelem, idx;
    uint8_t mode, es, has_old, full, first;
    uint32_t addr; /* slot offset of the record's element */
    const uint8_t *newv, *oldv;
} cur_t;

static int varint(cur_t *c, uint32_t *v) {
    uint32_t x = 0, i;
    for (i = 0; i < 5u; i++) {
        uint8_t b;
        if (c->pos >= c->len) return -1;
        b = c->p[c->pos++];
        if (i == 4u && (b & 0xF0u)) return -1; /* above 2^32-1 or longer than 5 bytes */
        x |= (uint32_t)(b & 0x7Fu) << (7u * i);
        if (!(b & 0x80u)) {
            if (i > 0u && b == 0u) return -1; /* non-minimal */
            *v = x;
            return 0;
        }
    }
    return -1;
}

static void cur_init(cur_t *c, const uint8_t *payload, uint32_t len, const phdr_t *h) {
    memset(c, 0, sizeof *c);
    c->p = payload;
    c->len = len;
    c->groups_left = h->n_groups;
    c->last_tensor = -1;
    c->has_old = (uint8_t)(h->type == TYPE_DELTA && (h->flags & 1u));
    c->full = h->type == TYPE_FULL;
}

/* 1: a record; 0: end (fully checked); negative: malformed/mismatch (errmsg set,
 * *st the status). */
static int cur_next(cur_t *c, uint8_t *st) {
    uint32_t rec;
    *st = MCU_ST_PATCH_INVALID;
    while (c->recs_left == 0u) {
        uint32_t t, n;
        const mcu_wtensor_t *wt;
        if (c->groups_left == 0u) {
            if (c->pos != c->len) { say("bytes left after the last group"); return -1; }
            return 0;
        }
        if (varint(c, &t) || (int32_t)t <= c->last_tensor) { say("bad group tensor index"); return -1; }
        if (t >= C->n_tensors) {
            say("patch addresses weight-store tensor ");
            say_u32(t);
            say_cat(", the device has ");
            say_u32(C->n_tensors);
            *st = MCU_ST_WRONG_BASE;
            return -1;
        }
        if (c->pos + 2u > c->len) { say("payload ends inside a group header"); return -1; }
        c->mode = c->p[c->pos];
        c->es = c->p[c->pos + 1u];
        c->pos += 2u;
        if (varint(c, &n) || n == 0u) { say("bad group count"); return -1; }
        wt = &C->tensors[t];
        if (c->mode > 1u || (c->full && c->mode != 1u)) { say("bad group mode"); return -1; }
        if (!wt->patchable || c->es != wt->elem_size) {
            say("patch writes tensor ");
            say_u32(t);
            say_cat(wt->patchable ? " with the wrong element size" : ", which is not a weight or bias");
            *st = MCU_ST_WRONG_BASE;
            return -1;
        }
        c->nelem = wt->nbytes / wt->elem_size;
        if (c->mode == 1u && n != c->nelem) {
            say("dense group size differs from tensor ");
            say_u32(t);
            *st = MCU_ST_WRONG_BASE;
            return -1;
        }
        if (n > c->nelem) { say("group larger than its tensor"); return -1; }
        c->last_tensor = (int32_t)t;
        c->tensor = t;
        c->recs_left = n;
        c->groups_left--;
        c->first = 1;
    }
    if (c->mode == 1u) {
        c->idx = c->first ? 0u : c->idx + 1u;
    } else {
        uint32_t gap;
        if (varint(c, &gap)) { say("bad record gap"); return -1; }
        if (c->first) c->idx = gap;
        else if (gap >= c->nelem || c->idx + 1u + gap < c->idx) c->idx = c->nelem;
        else c->idx = c->idx + 1u + gap;
        if (c->idx >= c->nelem) {
            say("record beyond the end of tensor ");
            say_u32(c->tensor);
            *st = MCU_ST_WRONG_BASE;
            return -1;
        }
    }
    c->first = 0;
    rec = c->es * (c->has_old ? 2u : 1u);
    if (c->pos + rec > c->len) { say("payload ends inside a record"); return -1; }
    c->newv = c->p + c->pos;
    c->oldv = c->has_old ? c->p + c->pos + c->es : 0;
    c->pos += rec;
    c->addr = C->tensors[c->tensor].offset + c->idx * c->es;
    c->recs_left--;
    c->entries++;
    return 1;
}

/* ---- verify + apply + commit ---------------------------------------------------------------- */
static uint8_t program(uint32_t off, const void *d, uint32_t n) {
    int r = flash_program(off, d, n);
    if (r == FLASH_OK) return MCU_ST_OK;
    say(r == FLASH_E_ZERO_TO_ONE ? "flash program refused (0->1 bit: page not erased)" : "flash write failed");
    return MCU_ST_FLASH_ERROR;
}

static uint8_t erase(uint32_t off) {
    if (flash_erase_page(off) == FLASH_OK) return MCU_ST_OK;
    say("flash erase failed");
    return MCU_ST_FLASH_ERROR;
}

static uint8_t commit_record(uint32_t seq, uint32_t slot, const uint8_t *hash) {
    uint8_t r[REC_SIZE];
    uint8_t st;
    memset(r, 0, sizeof r);
    mcu_put_u32(r, REC_MAGIC);
    mcu_put_u32(r + 4, seq);
    mcu_put_u32(r + 8, slot);
    memcpy(r + 16, hash, 32);
    mcu_put_u32(r + 56, mcu_crc32_update(0, r, 56));
    if (ps.meta_next >= RECS_PER_PAGE) { /* page full: the other page holds only older records */
        uint32_t q = 1u - ps.meta_page;
        if ((st = erase(C->meta_off + q * PAGE)) != MCU_ST_OK) return st;
        ps.meta_page = q;
        ps.meta_next = 0;
    }
    st = program(C->meta_off + ps.meta_page * PAGE + ps.meta_next * REC_SIZE, r, REC_SIZE);
    ps.meta_next++; /* even on failure: never program the same record slot twice */
    return st;
}

static uint8_t do_apply(mcu_reply_t *rep) {
    const uint8_t *data = flash_ptr(C->stage_off + PAGE);
    const uint8_t *act, *tag;
    phdr_t h;
    cur_t c;
    mcu_hmac_t mac;
    uint8_t dig[32], st, inact;
    uint32_t o, k;
    int r;

    if (!sg.active || sg.next != sg.total || sg.total == 0u) {
        say("no complete patch staged (send it first)");
        return fail(rep, MCU_ST_BAD_STATE);
    }
    if (mcu_crc32_update(0, data, sg.total) != sg.crc) {
        say("staged patch CRC mismatch (resend it)");
        return fail(rep, MCU_ST_CRC_MISMATCH);
    }
    if ((st = parse_header(data, sg.total, &h)) != MCU_ST_OK) return fail(rep, st);
    /* tag first: nothing of an unauthenticated patch is interpreted further */
    tag = data + PATCH_HDR + h.plen;
    mcu_hmac_init(&mac, C->key, 32);
    mcu_hmac_update(&mac, data, PATCH_HDR + h.plen);
    mcu_hmac_final(&mac, dig);
    if (!mcu_ct_equal(dig, tag, 32)) {
        say("patch authentication failed: tag mismatch");
        if (!mcu_ct_equal(h.kid, ps.key_id, 4)) say_cat(" (patch was signed with another key)");
        return fail(rep, MCU_ST_AUTH_FAILED);
    }
    mcu_sha256(data + PATCH_HDR, h.plen, dig);
    if (!mcu_ct_equal(dig, h.digest, 32)) { say("patch payload digest mismatch"); return fail(rep, MCU_ST_PATCH_INVALID); }
    if ((st = check_state(&h)) != MCU_ST_OK) return fail(rep, st);
    act = flash_ptr(C->slot_off[ps.slot]);
    /* pass 1: structure, ranges, old values */
    cur_init(&c, data + PATCH_HDR, h.plen, &h);
    while ((r = cur_next(&c, &st)) > 0) {
        if (c.has_old && memcmp(act + c.addr, c.oldv, c.es) != 0) {
            say("old value mismatch at tensor ");
            say_u32(c.tensor);
            say_cat(" element ");
            say_u32(c.idx);
            say_cat(" (wrong base)");
            return fail(rep, MCU_ST_WRONG_BASE);
        }
    }
    if (r < 0) return fail(rep, st);
    if (c.entries != h.entries) { say("entry count differs from the header"); return fail(rep, MCU_ST_PATCH_INVALID); }
    /* pass 2: build the inactive slot = active + records, piece by piece */
    inact = (uint8_t)(1u - ps.slot);
    for (o = 0; o < C->slot_size; o += PAGE)
        if ((st = erase(C->slot_off[inact] + o)) != MCU_ST_OK) return fail(rep, st);
    cur_init(&c, data + PATCH_HDR, h.plen, &h);
    r = cur_next(&c, &st);
    for (o = 0; o < C->slot_size; o += PIECE) {
        uint8_t buf[PIECE];
        memcpy(buf, act + o, PIECE);
        while (r > 0 && c.addr < o + PIECE) {
            for (k = 0; k < c.es; k++) buf[c.addr - o + k] = c.newv[k];
            r = cur_next(&c, &st);
        }
        if (!all_ff(buf, PIECE) && (st = program(C->slot_off[inact] + o, buf, PIECE)) != MCU_ST_OK)
            return fail(rep, st);
    }
    /* the new store must be exactly the promised model before anything commits */
    slot_hash(inact, dig);
    if (!mcu_ct_equal(dig, h.target, 32)) {
        say("applied patch gives model ");
        hexcat(errmsg, dig, 8);
        say_cat(", patch promises ");
        hexcat(errmsg, h.target, 8);
        say_cat("; rolled back");
        return fail(rep, MCU_ST_APPLY_FAILED);
    }
    if ((st = commit_record(h.seq, inact, dig)) != MCU_ST_OK) return fail(rep, st);
    ps.slot = inact;
    ps.seq = h.seq;
    ps.last_seq = h.seq;
    memcpy(ps.hash, dig, 32);
    mcu_model_weights_changed();
    /* the staged patch is spent */
    erase(C->stage_off);
    memset(&sg, 0, sizeof sg);
    mcu_put_u32(rep->data, ps.seq);
    memcpy(rep->data + 4, ps.hash, 32);
    rep->len = 36;
    return MCU_ST_OK;
}

/* ---- protocol handlers ----------------------------------------------------------------------- */
/* PATCH_STATUS -> see docs/patch-device.md (84 bytes). */
static uint8_t on_status(const mcu_msg_t *req, mcu_reply_t *rep) {
    uint8_t *d = rep->data;
    uint8_t flags = 0;
    (void)req;
    patch_init();
    memset(d, 0, 84);
    if (ps.valid) flags |= 1u;
    if (sg.active) flags |= 2u;
    if (sg.active && sg.next == sg.total) flags |= 4u;
#ifdef MCU_TEST_BUILD
    flags |= 8u;
#endif
    if (ps.area_loaded) flags |= 16u;
    d[0] = 1u;
    d[1] = flags;
    d[2] = ps.slot;
    d[3] = (uint8_t)ps.boots_fallback;
    mcu_put_u32(d + 4, ps.seq);
    mcu_put_u32(d + 8, ps.last_seq);
    mcu_put_u32(d + 12, sg.total);
    mcu_put_u32(d + 16, sg.next);
    mcu_put_u32(d + 20, sg.crc);
    mcu_put_u32(d + 24, C->stage_size - PAGE);
    mcu_put_u32(d + 28, C->slot_size);
    mcu_put_u32(d + 32, flash_stats.erases);
    mcu_put_u32(d + 36, flash_stats.programs);
    mcu_put_u32(d + 40, flash_stats.refused);
    mcu_put_u16(d + 44, (uint16_t)MAX_CHUNK);
#if PAGE > 0x7FFFu /* pages of 32 KB and more (STM32F4 sectors): bit 15 set, KB units */
    mcu_put_u16(d + 46, (uint16_t)(0x8000u | (PAGE / 1024u)));
#else
    mcu_put_u16(d + 46, (uint16_t)PAGE);
#endif
    if (ps.valid) memcpy(d + 48, ps.hash, 32);
    memcpy(d + 80, ps.key_id, 4);
    rep->len = 84;
    return MCU_ST_OK;
}
MCU_HANDLER(MCU_MSG_PATCH_STATUS, on_status);

/* Resume a staged transfer at sg.next? On write-once flash (ECC double words) only if
 * nothing was programmed past it: a chunk whose progress entry a power cut lost may
 * have been (partly) written, and those double words cannot be written again. Then the
 * transfer starts over (a fresh staging header). NOR-like flash reprograms the same
 * bytes harmlessly. */
static int resumable(void) {
#if MCU_FLASH_WRITE_UNIT > 1
    const uint32_t base = C->stage_off + PAGE;
    if (sg.erased_upto > sg.next && !flash_erased(base + sg.next, sg.erased_upto - sg.next)) return 0;
#endif
    return 1;
}

/* PATCH_BEGIN {u32 total, u32 crc32(patch), patch header (128 B)} -> {u32 next, u16 max_chunk}.
 * Resumes a staged session with the same total and CRC (from its acknowledged offset). */
static uint8_t on_begin(const mcu_msg_t *req, mcu_reply_t *rep) {
    uint32_t total, crc;
    uint8_t hdr[20], st;
    phdr_t h;
    patch_init();
    if (req->len != 8u + PATCH_HDR) { say("BEGIN needs total, crc and the patch header"); return fail(rep, MCU_ST_BAD_LENGTH); }
    total = rd32(req->data);
    crc = rd32(req->data + 4);
    if ((st = parse_header(req->data + 8, total, &h)) != MCU_ST_OK) return fail(rep, st);
    if ((st = check_state(&h)) != MCU_ST_OK) return fail(rep, st);
    if (total > C->stage_size - PAGE) {
        say("patch of ");
        say_u32(total);
        say_cat(" B exceeds the staging area of ");
        say_u32(C->stage_size - PAGE);
        say_cat(" B");
        return fail(rep, MCU_ST_TOO_LARGE);
    }
    if (!(sg.active && sg.total == total && sg.crc == crc && resumable())) {
        memset(&sg, 0, sizeof sg);
        if ((st = erase(C->stage_off)) != MCU_ST_OK) return fail(rep, st);
        mcu_put_u32(hdr, STAGE_MAGIC);
        mcu_put_u32(hdr + 4, total);
        mcu_put_u32(hdr + 8, crc);
        mcu_put_u32(hdr + 12, h.seq);
        mcu_put_u32(hdr + 16, mcu_crc32_update(0, hdr, 16));
        if ((st = program(C->stage_off, hdr, 20)) != MCU_ST_OK) return fail(rep, st);
        sg.active = 1;
        sg.total = total;
        sg.crc = crc;
        sg.seq = h.seq;
    }
    mcu_put_u32(rep->data, sg.next);
    mcu_put_u16(rep->data + 4, (uint16_t)MAX_CHUNK);
    rep->len = 6;
    return MCU_ST_OK;
}
MCU_HANDLER(MCU_MSG_PATCH_BEGIN, on_begin);

#if MCU_FLASH_WRITE_UNIT > 1
/* Write-once flash: program the staged bytes [sg.next, sg.next + n) in whole write units
 * only, each exactly once. Bytes short of a unit wait in sg.tail (acknowledged to the
 * host; after a power cut the transfer resumes from the last programmed end, which the
 * progress entries record); the patch's last bytes are programmed padded. Advances
 * sg.flushed. */
static uint8_t stage_program(uint32_t base, const uint8_t *d, uint32_t n) {
    const uint32_t wu = MCU_FLASH_WRITE_UNIT;
    uint32_t start = sg.flushed, end = sg.next + n, upto, k;
    uint8_t st, u[MCU_FLASH_WRITE_UNIT];
    upto = end == sg.total ? end : end / wu * wu;
    if (sg.tail_n) {
        k = wu - sg.tail_n;
        if (start + wu > upto && end != sg.total) { /* still short of a unit */
            memcpy(sg.tail + sg.tail_n, d, n);
            sg.tail_n += n;
            return MCU_ST_OK;
        }
        if (k > n) k = n;
        memcpy(u, sg.tail, sg.tail_n);
        memcpy(u + sg.tail_n, d, k);
        if ((st = program(base + start, u, sg.tail_n + k)) != MCU_ST_OK) return st;
        start += sg.tail_n + k;
        d += k;
        n -= k;
        sg.tail_n = 0;
    }
    if (upto > start) {
        if ((st = program(base + start, d, upto - start)) != MCU_ST_OK) return st;
        d += upto - start;
        n -= upto - start;
        start = upto;
    }
    memcpy(sg.tail, d, n);
    sg.tail_n = n;
    sg.flushed = start;
    return MCU_ST_OK;
}
#endif

/* PATCH_CHUNK {u32 offset, data} -> {u32 next, u8 gap}. In-order writes only; a chunk
 * at or below `next` is acknowledged (its new tail written); one beyond answers
 * gap=1 with the offset to resend from (go-back-N). */
static uint8_t on_chunk(const mcu_msg_t *req, mcu_reply_t *rep) {
    uint32_t off, n, skip;
    uint8_t gap = 0, st;
    patch_init();
    if (req->len < 4u) return MCU_ST_BAD_LENGTH;
    if (!sg.active) { say("no patch transfer in progress (BEGIN first)"); return fail(rep, MCU_ST_BAD_STATE); }
    off = rd32(req->data);
    n = req->len - 4u;
    if (off > sg.total || n > sg.total - off) { say("chunk beyond the announced size"); return fail(rep, MCU_ST_TOO_LARGE); }
    if (off > sg.next) {
        gap = 1;
    } else if (off + n > sg.next) {
        const uint32_t base = C->stage_off + PAGE;
        skip = sg.next - off;
        off += skip;
        n -= skip;
        while (sg.erased_upto < off + n) {
            if ((st = erase(base + sg.erased_upto)) != MCU_ST_OK) return fail(rep, st);
            sg.erased_upto += PAGE;
        }
#if MCU_FLASH_WRITE_UNIT > 1
        const uint32_t prev = sg.flushed;
        if ((st = stage_program(base, req->data + 4 + skip, n)) != MCU_ST_OK) {
#else
        if ((st = program(base + off, req->data + 4 + skip, n)) != MCU_ST_OK) {
#endif
            sg.active = 0; /* the staged bytes are not what we think: start over */
            return fail(rep, st);
        }
#if MCU_FLASH_WRITE_UNIT > 1
        if (sg.prog_idx < PROG_MAX && sg.flushed > prev) {
            uint32_t done = sg.flushed;
#else
        if (sg.prog_idx < PROG_MAX) {
            uint32_t done = off + n;
#endif
            uint8_t e[8];
            mcu_put_u32(e, done);
            mcu_put_u32(e + 4, ~done);
            if ((st = program(C->stage_off + PROG_FIRST + 8u * sg.prog_idx, e, 8)) != MCU_ST_OK) return fail(rep, st);
            sg.prog_idx++;
        }
        sg.next = off + n;
    }
    mcu_put_u32(rep->data, sg.next);
    rep->data[4] = gap;
    rep->len = 5;
    return MCU_ST_OK;
}
MCU_HANDLER(MCU_MSG_PATCH_CHUNK, on_chunk);

/* PATCH_APPLY {} -> {u32 seq, hash[32]}: verify the staged patch, build the other
 * slot, check its hash, commit. */
static uint8_t on_apply(const mcu_msg_t *req, mcu_reply_t *rep) {
    (void)req;
    patch_init();
    return do_apply(rep);
}
MCU_HANDLER(MCU_MSG_PATCH_APPLY, on_apply);

/* PATCH_ABORT {} -> {}: forget the staged patch. */
static uint8_t on_abort(const mcu_msg_t *req, mcu_reply_t *rep) {
    (void)req;
    patch_init();
    if (sg.active || !flash_erased(C->stage_off, 32)) {
        uint8_t st = erase(C->stage_off);
        memset(&sg, 0, sizeof sg);
        if (st != MCU_ST_OK) return fail(rep, st);
    }
    return MCU_ST_OK;
}
MCU_HANDLER(MCU_MSG_PATCH_ABORT, on_abort);

/* PATCH_READ {u32 offset, u16 n} -> bytes of the active slot (tests, host-side checks). */
static uint8_t on_read(const mcu_msg_t *req, mcu_reply_t *rep) {
    uint32_t off, n;
    patch_init();
    if (req->len != 6u) return MCU_ST_BAD_LENGTH;
    if (!ps.valid) return MCU_ST_NO_MODEL;
    off = rd32(req->data);
    n = mcu_get_u16(req->data + 4);
    if (off > C->slot_size) return MCU_ST_BAD_ARG;
    if (n > C->slot_size - off) n = C->slot_size - off;
    if (n > rep->cap) n = rep->cap;
    memcpy(rep->data, flash_ptr(C->slot_off[ps.slot] + off), n);
    rep->len = (uint16_t)n;
    return MCU_ST_OK;
}
MCU_HANDLER(MCU_MSG_PATCH_READ, on_read);

/* PATCH_FAULT {u32 n, u8 torn} (test builds): power cut at the n-th flash operation. */
static uint8_t on_fault(const mcu_msg_t *req, mcu_reply_t *rep) {
    (void)rep;
#ifdef MCU_TEST_BUILD
    patch_init();
    if (req->len != 5u) return MCU_ST_BAD_LENGTH;
    flash_set_fault(rd32(req->data), req->data[4]);
    return MCU_ST_OK;
#else
    (void)req;
    return MCU_ST_UNSUPPORTED;
#endif
}
MCU_HANDLER(MCU_MSG_PATCH_FAULT, on_fault);
