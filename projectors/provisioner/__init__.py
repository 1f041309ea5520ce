"""The provisioner: a process manager that boots launched instances.

It follows the event stream like a projection (`PendingBoots`: one row per instance waiting to
boot, kept with its checkpoint in one transaction), and a loop marks each due instance running
through the command service's internal endpoint. Because the pending boots live in PostgreSQL,
a crash or restart loses none of them.
"""
