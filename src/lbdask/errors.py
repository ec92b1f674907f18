"""Error types whose message is shown to users as one line by the CLI.

Every failure a user can cause (bad input, missing id, unreachable store, wrong model)
raises a subclass of `LbdaskError`; anything else is a bug and keeps its traceback
behind `--debug`.
"""


class LbdaskError(Exception):
    """A failure with a message fit for an end user (no traceback needed)."""


class ConfigError(LbdaskError):
    """A configuration file or option is missing or invalid."""


class InputError(LbdaskError):
    """An input image is corrupt, unsupported or too large."""


class NotFoundError(LbdaskError):
    """An image id, archive or model weights could not be found."""


class StoreError(LbdaskError):
    """The archive store (folder or S3) is unreachable or unusable."""


class ServingNotInstalledError(StoreError):
    """The cluster's workers run no lbdask serving (`lbdask serve` is not running there)."""


class ArchiveFormatError(LbdaskError):
    """The archive was written by an incompatible format version."""


class ModelMismatchError(LbdaskError):
    """The model asked for does not match the one the archive was written with."""


class IntegrityError(LbdaskError):
    """Stored bytes do not match their recorded checksum."""


class UnknownImageError(NotFoundError, KeyError):
    """The archive has no image of this id; a KeyError too, so `box.read(id)` fits dict-like code."""

    def __init__(self, image_id: str, message: str | None = None) -> None:
        super().__init__(image_id, message or f"no image {image_id!r}")
        self.image_id = image_id

    def __str__(self) -> str:  # KeyError would show repr(args); users get the sentence
        return str(self.args[1])
