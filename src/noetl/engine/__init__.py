"""noetl.engine"""
