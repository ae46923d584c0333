#include "names.h"

#include <string.h>

bool name_valid(const char *s, size_t len)
{
    if (!s || len == 0 || len > NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

bool name_valid_cstr(const char *s)
{
    return s && name_valid(s, strnlen(s, NAME_MAX_LEN + 1));
}
