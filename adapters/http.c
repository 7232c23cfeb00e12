/* http.c — being written. */
#include "adapters/http.h"
