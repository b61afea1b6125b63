/* child_error: run a call that must end the program through sl_fatal, in a child process, and
 * return what it printed on stderr. The child must exit with status 1 (checked here). */
#ifndef SHARDLORA_CHILD_ERROR_H
#define SHARDLORA_CHILD_ERROR_H

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

/* needs cmocka.h */
static void child_error(void (*call)(void *), void *arg, char *msg, size_t len)
{
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 2);
        call(arg);
        _exit(0);
    }
    close(fd[1]);
    size_t used = 0;
    ssize_t got;
    while ((got = read(fd[0], msg + used, len - 1 - used)) > 0) used += (size_t)got;
    msg[used] = 0;
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    printf("# %s", msg);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);
}

#endif
