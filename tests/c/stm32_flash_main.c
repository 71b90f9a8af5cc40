/* Test driver for the STM32 flash backends (firmware_templates/patch/stm32/) on their
 * register-level controller models, built for the host with -DMCU_FLASH_MODEL and
 * -DTEST_F4 or -DTEST_L4. Usage: stm32_flash_main FILE rules|torn-program|torn-erase|
 * check-program|check-erase; prints "OK" or the failed check (torn-*: the armed power
 * cut ends the process with status 99; check-* then inspects what it left). */
#include <stdio.h>
#include <string.h>
#include "flash.h"
#include "stm32_flash.h"
#include "stm32_model.h"

int mcu_flash_nmi(void);

extern const char *board_flash_path;
void board_log(const char *s) { fprintf(stderr, "%s\n", s); }

#define NPAGES 6u
static uint8_t area[NPAGES * MCU_FLASH_PAGE];
#define P1 MCU_FLASH_PAGE /* page/sector 1 of the area: erased by the tests */

#define CHECK(c) do { if (!(c)) { printf("FAIL line %d: %s\n", __LINE__, #c); return 1; } } while (0)

static int init(int fresh) {
    uint8_t id[32] = {7, 7};
    if (fresh) remove(board_flash_path);
    memset(area, 0x5A, MCU_FLASH_PAGE); /* page 0: programmed image bytes */
    memset(area + MCU_FLASH_PAGE, 0xFF, sizeof area - MCU_FLASH_PAGE);
    return flash_init(area, sizeof area, id);
}

#ifdef TEST_L4
#define R L4_FLASH
#define W L4_W
#define BASE (L4_FLASH_ORIGIN + L4_BANK_SIZE) /* the model's area address: bank 2 */
static void unlock(void) { W(R->KEYR, STM32_FLASH_KEY1); W(R->KEYR, STM32_FLASH_KEY2); }
static void clear(void) { W(R->SR, L4_SR_ERRORS | L4_SR_EOP); }

static int rules(void) {
    uint8_t b[64];
    CHECK(init(1) == 0 && (R->OPTR & L4_OPTR_DBANK));
    CHECK(R->CR & L4_CR_LOCK);                              /* locked after reset */
    W(R->CR, L4_CR_PG);                                     /* ignored while locked */
    CHECK(R->CR == L4_CR_LOCK);
    l4m_bus_write(BASE + P1, 0, 4);                          /* store while locked */
    CHECK((R->SR & L4_SR_PGSERR) && flash_ptr(P1)[0] == 0xFF);
    clear();
    CHECK(flash_erase_page(P1) == FLASH_OK && flash_erased(P1, MCU_FLASH_PAGE));
    CHECK(flash_erase_page(100) == FLASH_E_ALIGN);
    memset(b, 0xA5, sizeof b);
    CHECK(flash_program(P1 + 8, b, 16) == FLASH_OK && flash_ptr(P1 + 8)[15] == 0xA5);
    CHECK(R->CR & L4_CR_LOCK);                              /* locked again after the op */
    memset(b, 0x05, sizeof b);                              /* only clears bits, but twice: */
    CHECK(flash_program(P1 + 8, b, 8) == FLASH_E_ZERO_TO_ONE && flash_stats.refused == 1);
    CHECK(flash_program(P1 + 33, b, 3) == FLASH_OK);        /* partial double word: padded */
    CHECK(flash_ptr(P1 + 32)[0] == 0xFF && flash_ptr(P1 + 33)[0] == 0x05);
    CHECK(flash_program(P1 + 38, b, 1) == FLASH_E_ZERO_TO_ONE); /* same double word */
    memset(b, 0xFF, sizeof b);
    CHECK(flash_program(P1 + 128, b, 64) == FLASH_OK && flash_erased(P1 + 128, 64)); /* no-op */
    /* register level: the rules the model enforces */
    unlock();
    CHECK(!(R->CR & L4_CR_LOCK));
    l4m_bus_write(BASE + P1 + 256, 0x12345678u, 4);          /* PG not set */
    CHECK(R->SR & L4_SR_PGSERR);
    W(R->CR, L4_CR_PG);
    l4m_bus_write(BASE + P1 + 256, 0, 4);                    /* error pending: refused */
    CHECK(flash_ptr(P1 + 256)[0] == 0xFF);
    clear();
    l4m_bus_write(BASE + P1 + 260, 0, 4);                    /* first word not 8-aligned */
    CHECK(R->SR & L4_SR_PGAERR);
    clear();
    l4m_bus_write(BASE + P1 + 256, 0, 1);                    /* byte store */
    CHECK(R->SR & L4_SR_SIZERR);
    clear();
    l4m_bus_write(BASE + P1 + 256, 0x11111111u, 4);
    l4m_bus_write(BASE + P1 + 264, 0x22222222u, 4);          /* second word elsewhere */
    CHECK((R->SR & L4_SR_PGAERR) && flash_ptr(P1 + 256)[0] == 0xFF);
    clear();
    l4m_bus_write(BASE + P1 + 256, 0x11111111u, 4);
    l4m_bus_write(BASE + P1 + 260, 0x22222222u, 4);          /* a double word: programmed */
    CHECK((R->SR & L4_SR_EOP) && flash_ptr(P1 + 256)[0] == 0x11 && flash_ptr(P1 + 260)[0] == 0x22);
    clear();
    l4m_bus_write(BASE + P1 + 256, 0x01010101u, 4);
    l4m_bus_write(BASE + P1 + 260, 0x02020202u, 4);          /* again: PROGERR */
    CHECK((R->SR & L4_SR_PROGERR) && flash_ptr(P1 + 256)[0] == 0x11);
    clear();
    l4m_bus_write(BASE + P1 + 256, 0, 4);
    l4m_bus_write(BASE + P1 + 260, 0, 4);                    /* all zeros: allowed */
    CHECK(!(R->SR & L4_SR_ERRORS) && flash_ptr(P1 + 256)[0] == 0);
    W(R->CR, 0);
    W(R->CR, L4_CR_PER | (0u << L4_CR_PNB_SHIFT));           /* bank 1 page 0: the code */
    W(R->CR, R->CR | L4_CR_STRT);
    CHECK(R->SR & L4_SR_WRPERR);
    clear();
    W(R->CR, L4_CR_MER1 | L4_CR_STRT);                       /* mass erase */
    CHECK(R->SR & L4_SR_WRPERR);
    clear();
    W(R->CR, L4_CR_LOCK);
    W(R->KEYR, 0x11111111u);                                 /* wrong key: locked until reset */
    unlock();
    CHECK(R->CR & L4_CR_LOCK);
    memset(b, 0x00, sizeof b);
    CHECK(flash_program(P1 + 512, b, 8) == FLASH_E_IO && flash_ptr(P1 + 512)[0] == 0xFF);
    stm32m_power_on();                                       /* reset */
    CHECK(flash_program(P1 + 512, b, 8) == FLASH_OK);
    CHECK(flash_readable(0, sizeof area) && flash_erased(2 * P1, MCU_FLASH_PAGE));
    printf("OK\n");
    return 0;
}

static int torn_program(void) {
    uint8_t b[64];
    CHECK(init(1) == 0 && flash_erase_page(P1) == FLASH_OK);
    memset(b, 0x00, sizeof b);
    flash_set_fault(1, 1);
    flash_program(P1, b, 64); /* 8 double words: 4 done, the 5th torn, power gone */
    printf("FAIL: still alive\n");
    return 1;
}

static int check_program(void) {
    CHECK(init(0) == 1);                                     /* reloaded, ECC state too */
    CHECK(flash_ptr(P1)[0] == 0 && flash_ptr(P1 + 31)[0] == 0 && flash_readable(P1, 32));
    CHECK(!flash_readable(P1 + 32, 8) && !flash_erased(P1 + 32, 8)); /* the torn one */
    CHECK(flash_ptr(P1 + 32)[0] == 0 && flash_ptr(P1 + 36)[0] == 0xFF);
    (void)l4m_bus_read(BASE + P1 + 36);                     /* a raw read: ECCD + address */
    CHECK((R->ECCR & L4_ECCR_ECCD) && (R->ECCR & L4_ECCR_BK) &&
          (R->ECCR & L4_ECCR_ADDR_MASK) == ((P1 + 36) & L4_ECCR_ADDR_MASK));
    CHECK(mcu_flash_nmi() == 1 && !(R->ECCR & L4_ECCR_ECCD)); /* the NMI handler clears it */
    CHECK(flash_erased(P1 + 40, 24));                        /* never started */
    CHECK(flash_program(P1 + 32, "\0\0\0\0\0\0\0\0", 8) == FLASH_E_ZERO_TO_ONE);
    CHECK(flash_erase_page(P1) == FLASH_OK && flash_erased(P1, MCU_FLASH_PAGE));
    printf("OK\n");
    return 0;
}

static int torn_erase(void) {
    CHECK(init(1) == 0);
    flash_set_fault(1, 1);
    flash_erase_page(0); /* the 0x5A page: half erased, then power gone */
    printf("FAIL: still alive\n");
    return 1;
}

static int check_erase(void) {
    CHECK(init(0) == 1);
    CHECK(flash_erased(0, MCU_FLASH_PAGE / 2u));
    CHECK(!flash_readable(MCU_FLASH_PAGE / 2u, 8) && !flash_erased(MCU_FLASH_PAGE / 2u, 8));
    CHECK(flash_erase_page(0) == FLASH_OK && flash_erased(0, MCU_FLASH_PAGE));
    printf("OK\n");
    return 0;
}
#else /* TEST_F4 */
#define R F4_FLASH
#define W F4_W
#define BASE 0x08020000u /* the model's area address: sector 5 */
static void unlock(void) { W(R->KEYR, STM32_FLASH_KEY1); W(R->KEYR, STM32_FLASH_KEY2); }
static void clear(void) { W(R->SR, F4_SR_ERRORS | F4_SR_EOP); }

static int rules(void) {
    uint8_t b[16];
    CHECK(init(1) == 0 && (R->CR & F4_CR_LOCK));
    W(R->CR, F4_CR_PG);
    CHECK(R->CR == F4_CR_LOCK);                             /* locked: ignored */
    f4m_bus_write(BASE + P1, 0, 1);
    CHECK((R->SR & F4_SR_PGSERR) && flash_ptr(P1)[0] == 0xFF);
    clear();
    CHECK(flash_erase_page(P1) == FLASH_OK && flash_erased(P1, MCU_FLASH_PAGE));
    CHECK(flash_erase_page(4096) == FLASH_E_ALIGN);          /* not a sector start */
    memset(b, 0xF0, sizeof b);
    CHECK(flash_program(P1 + 1, b, 13) == FLASH_OK);         /* bytes, words, bytes */
    memset(b, 0x30, sizeof b);
    CHECK(flash_program(P1 + 1, b, 13) == FLASH_OK && flash_ptr(P1 + 13)[0] == 0x30);
    memset(b, 0x0F, sizeof b);
    CHECK(flash_program(P1 + 1, b, 4) == FLASH_E_ZERO_TO_ONE && flash_stats.refused == 1);
    CHECK(R->CR & F4_CR_LOCK);
    unlock();
    W(R->CR, (F4_PSIZE_X32 << F4_CR_PSIZE_SHIFT) | F4_CR_PG);
    f4m_bus_write(BASE + P1 + 64, 0, 1);                     /* byte store, PSIZE x32 */
    CHECK((R->SR & F4_SR_PGPERR) && flash_ptr(P1 + 64)[0] == 0xFF);
    clear();
    f4m_bus_write(BASE + P1 + 66, 0, 4);                     /* misaligned word */
    CHECK(R->SR & F4_SR_PGAERR);
    f4m_bus_write(BASE + P1 + 64, 0, 4);                     /* error pending: refused */
    CHECK((R->SR & F4_SR_PGSERR) && flash_ptr(P1 + 64)[0] == 0xFF);
    clear();
    f4m_bus_write(BASE + P1 + 64, 0x00FF00FFu, 4);
    CHECK((R->SR & F4_SR_EOP) && flash_ptr(P1 + 64)[0] == 0xFF && flash_ptr(P1 + 65)[0] == 0);
    W(R->CR, 0);
    W(R->CR, F4_CR_SER | (0u << F4_CR_SNB_SHIFT) | F4_CR_STRT); /* sector 0: the code */
    CHECK(R->SR & F4_SR_WRPERR);
    clear();
    W(R->CR, F4_CR_MER | F4_CR_STRT);
    CHECK(R->SR & F4_SR_WRPERR);
    clear();
    W(R->CR, F4_CR_SER | F4_CR_PG | (6u << F4_CR_SNB_SHIFT) | F4_CR_STRT); /* SER + PG */
    CHECK(R->SR & F4_SR_PGSERR);
    clear();
    W(R->CR, F4_CR_LOCK);
    W(R->KEYR, STM32_FLASH_KEY2);                            /* keys out of order */
    unlock();
    CHECK(R->CR & F4_CR_LOCK);
    CHECK(flash_erase_page(2 * P1) == FLASH_E_IO);
    stm32m_power_on();
    CHECK(flash_erase_page(2 * P1) == FLASH_OK);
    printf("OK\n");
    return 0;
}

static int torn_program(void) {
    uint8_t b[16];
    CHECK(init(1) == 0 && flash_erase_page(P1) == FLASH_OK);
    memset(b, 0x00, sizeof b);
    flash_set_fault(1, 1);
    flash_program(P1, b, 16); /* 4 words: 2 done, the 3rd half programmed */
    printf("FAIL: still alive\n");
    return 1;
}

static int check_program(void) {
    CHECK(init(0) == 1);
    CHECK(flash_ptr(P1 + 7)[0] == 0 && flash_ptr(P1 + 9)[0] == 0 && flash_ptr(P1 + 10)[0] == 0xFF);
    CHECK(flash_erased(P1 + 12, 4));
    printf("OK\n");
    return 0;
}

static int torn_erase(void) {
    CHECK(init(1) == 0);
    flash_set_fault(1, 1);
    flash_erase_page(0);
    printf("FAIL: still alive\n");
    return 1;
}

static int check_erase(void) {
    CHECK(init(0) == 1);
    CHECK(flash_erased(0, MCU_FLASH_PAGE / 2u) && !flash_erased(MCU_FLASH_PAGE / 2u, MCU_FLASH_PAGE / 2u));
    printf("OK\n");
    return 0;
}
#endif

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    board_flash_path = argv[1];
    if (!strcmp(argv[2], "rules")) return rules();
    if (!strcmp(argv[2], "torn-program")) return torn_program();
    if (!strcmp(argv[2], "check-program")) return check_program();
    if (!strcmp(argv[2], "torn-erase")) return torn_erase();
    if (!strcmp(argv[2], "check-erase")) return check_erase();
    return 2;
}
