#ifndef UTIL_H
#define UTIL_H

int clamp(int x, int lo, int hi);

#endif
