"""The text Windows setup reads: the one Jinja2 environment, autounattend.xml, winnt.sif
and txtsetup.oem, and the post-install script."""
