/* oauth.c — being written. */
#include "adapters/oauth.h"
