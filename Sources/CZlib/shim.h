#include <zlib.h>
/* inflateInit2 is a macro in zlib.h; Swift cannot import function-like macros. */
static inline int czlib_inflateInit2(z_streamp s, int windowBits) { return inflateInit2(s, windowBits); }
