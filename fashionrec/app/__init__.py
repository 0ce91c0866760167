"""What people and programs drive fashionrec with: the ``fashionrec`` command (``cli``, with the serving
commands in ``serving_commands``), the local runner and remote submission of the pipeline (``runner``,
``submit``), the demo, and the Triton client (``client``) with the customer histories it sends
(``customers``)."""
