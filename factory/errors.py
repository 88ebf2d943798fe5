"""The mark of a user's mistake (a bad config, policy, manifest or input): shown as one line naming the file and key,
never with a traceback, however deep in a flow it was raised. A bug raises anything else and keeps its traceback."""


class UserError(Exception):
    """Base of every error whose message alone tells the user what to change."""
