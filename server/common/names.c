/* names.c - see names.h. */
#include <stdint.h>
#include <string.h>

#include "json_io.h"
#include "names.h"

int kw_name_char(unsigned char c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
}

int kw_name_valid(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > KW_NAME_MAX || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
                return 0;
        for (size_t i = 0; i < n; i++)
                if (!kw_name_char((unsigned char)s[i]))
                        return 0;
        return 1;
}

int kw_utf8_printable(const char *s)
{
        size_t n = strlen(s);
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
                        return 0;
        return kw_utf8_valid((const uint8_t *)s, n);
}
