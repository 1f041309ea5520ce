"""The local launcher behind `cloudnet up/down/status` (DESIGN §7): the whole mesh on one machine,
run by supervisord from configs rendered into the state directory."""
