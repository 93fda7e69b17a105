"""The task graph and its state: sessions and their tasks, which tasks run next, what a
person's control action or an adapter's report does to them, whether a task runs again, and
the personas tasks are done as.
"""
