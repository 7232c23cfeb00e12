/* clock.h — monotonic milliseconds, for deadlines and durations. */
#ifndef SL_CLOCK_H
#define SL_CLOCK_H

/* Milliseconds on CLOCK_MONOTONIC: only differences mean anything. */
long long sl_mono_ms(void);

#endif
