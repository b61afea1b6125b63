/* watchdog: a collective that makes no progress for --comm-timeout seconds (a peer rank stopped,
 * swapped out or gone without its process dying) ends this rank with a message naming the
 * collective, and with it the job (mpirun ends the others), instead of hanging until the wall
 * time. A background thread looks twice a second at the collective this rank is in, if any. */
#ifndef SL_WATCHDOG_H
#define SL_WATCHDOG_H

/* Start watching (once; timeout_s <= 0: never). */
void watchdog_start(double timeout_s);
/* Around a blocking collective: what it is, for the message. Not nested. */
void watchdog_enter(const char *what);
void watchdog_leave(void);

#endif
