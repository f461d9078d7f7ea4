"""The one exception type that reaches the user as a one-line message, never a traceback."""

import errno


class UserError(Exception):
    """Bad input or an unmet precondition the user can fix; printed as `slmbench: <message>`."""

    exit_code = 2


class OutputError(UserError):
    """The run's own files cannot be written (disk full, read-only or vanished directory). The
    job stops with one line saying what was kept; a rerun resumes once the cause is fixed."""

    exit_code = 1


# Errors of writing a file (not of a network connection, which is an OSError too).
FILE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOENT, errno.EACCES, errno.EPERM, errno.EFBIG,
               errno.EIO, errno.ENOTDIR}


def is_file_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and not isinstance(exc, ConnectionError) and exc.errno in FILE_ERRNOS


def output_error(path, exc: OSError, kept: int | None = None) -> OutputError:
    what = (exc.strerror or str(exc)).lower()
    records = f"; {kept} records kept" if kept is not None else ""
    return OutputError(f"{what} writing {path}{records}; free space (or fix the directory) and rerun to resume")


class SweepAborted(BaseException):  # noqa: N818 - not an error of its own: the stop after one
    """Raised out of a job to stop the sweep (its output directory cannot be written): a
    BaseException, so Hydra's job runner neither records it as one job's failure and goes on
    (writing the next job's .hydra/ into the full disk), nor prints a traceback."""
