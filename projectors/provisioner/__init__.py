"""The provisioner: a process manager that boots launched instances.

Its to-do list is a projection (`PendingBoots`: one row per instance waiting to boot, kept with
its checkpoint in one transaction), which the projector applies with the read models; the
provisioner process runs a loop that marks each due instance running through the command
service's internal endpoint. Because the pending boots live in PostgreSQL, a crash or restart
loses none of them.
"""
