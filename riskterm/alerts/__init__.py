"""Alerts: committed records sent to phones and chat through apprise (the ``alerts:`` block).

config: the block's model and URL checks; format: the messages; dispatch: the task, queues,
rate limits and retries that deliver them off the event loop; cli: ``riskterm alerts test``.
"""
