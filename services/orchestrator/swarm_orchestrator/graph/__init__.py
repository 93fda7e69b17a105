"""The task graph and its state: sessions and their tasks, which tasks run next, what a
person's control action or an adapter's report does to them, and whether a task runs again.
"""
