/* secret.c — being written. */
#include "common/secret.h"
