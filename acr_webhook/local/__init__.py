"""Local stand-ins for Azure: the Functions host behind ``python -m acr_webhook serve`` and the
trigger runners it starts. Dev tools only: nothing deployed imports this package, and
``.funcignore`` leaves it out of the deployment package.
"""
