#include <stdio.h>
#include "util.h"

int scale(int x) {
}

int main(void) {
    printf("%d\n", clamp(scale(7), 0, 10));
    return 0;
}
