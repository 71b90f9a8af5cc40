/* Test driver for firmware_templates/patch/flash_nor.c + boards/host/flash_host.c:
 * NOR semantics (erase to 0xFF, program 1->0 only, 0->1 refused) and the backing
 * file mirroring memory. Usage: flash_main FILE; prints "OK" or the failed check. */
#include <stdio.h>
#include <string.h>
#include "flash.h"

extern const char *board_flash_path;
static uint8_t area[4 * MCU_FLASH_PAGE];

#define CHECK(c) do { if (!(c)) { printf("FAIL line %d: %s\n", __LINE__, #c); return 1; } } while (0)

int main(int argc, char **argv) {
    uint8_t id[32] = {1, 2, 3}, b[16], back[sizeof area];
    FILE *f;
    if (argc < 2) return 2;
    board_flash_path = argv[1];
    memset(area, 0x5A, sizeof area);
    CHECK(flash_init(area, sizeof area, id) == 0);       /* fresh file from the image */
    CHECK(flash_erase_page(MCU_FLASH_PAGE) == FLASH_OK);
    CHECK(flash_ptr(MCU_FLASH_PAGE)[0] == 0xFF && flash_ptr(2 * MCU_FLASH_PAGE - 1)[0] == 0xFF);
    CHECK(flash_erase_page(100) == FLASH_E_ALIGN);
    CHECK(flash_erase_page(4 * MCU_FLASH_PAGE) == FLASH_E_RANGE);
    memset(b, 0xF0, sizeof b);
    CHECK(flash_program(MCU_FLASH_PAGE + 8, b, 16) == FLASH_OK);
    memset(b, 0x30, sizeof b);                              /* 0xF0 -> 0x30: clears bits only */
    CHECK(flash_program(MCU_FLASH_PAGE + 8, b, 16) == FLASH_OK);
    memset(b, 0x0F, sizeof b);                              /* would set bits: refused */
    CHECK(flash_program(MCU_FLASH_PAGE + 8, b, 16) == FLASH_E_ZERO_TO_ONE);
    CHECK(flash_ptr(MCU_FLASH_PAGE + 8)[0] == 0x30 && flash_stats.refused == 1);
    CHECK(flash_program(0, b, 16) == FLASH_E_ZERO_TO_ONE);  /* 0x5A page was never erased */
    CHECK(flash_program(sizeof area - 8, b, 16) == FLASH_E_RANGE);
    CHECK(flash_stats.erases == 1 && flash_stats.programs == 2);
    f = fopen(argv[1], "rb");
    CHECK(f && fread(back, 1, sizeof back, f) == sizeof back);
    fclose(f);
    CHECK(memcmp(back, area, sizeof area) == 0);           /* file mirrors memory */
    memset(area, 0, sizeof area);
    CHECK(flash_init(area, sizeof area, id) == 1);          /* reload from the file */
    CHECK(memcmp(back, area, sizeof area) == 0);
    id[0] = 9;
    CHECK(flash_init(area, sizeof area, id) == 0);          /* other layout: re-created */
    printf("OK\n");
    return 0;
}
