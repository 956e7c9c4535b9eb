"""noetl.server"""
