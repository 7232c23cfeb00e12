/* credential.c — being written. */
#include "adapters/credential.h"
