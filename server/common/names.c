/* names.c - see names.h. */
#include <string.h>

#include "names.h"

int kw_name_valid(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > KW_NAME_MAX || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
                return 0;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-'))
                        return 0;
        }
        return 1;
}
