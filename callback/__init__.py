"""The 差评 callback loop: RQ jobs and the AMI dialer (issue: callback loop)."""
