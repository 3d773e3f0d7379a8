// The prompt that stands in for the page when viewing needs the token: a navigation cannot
// send an Authorization header, so the page is fetched with the token and replaces this one.
// In a block: the page's own scripts declare the same names once it is written.
'use strict';
{
  const TOKEN_KEY = 'visiond-token';
  const notice = document.getElementById('notice');

  const open = async (token) => {
    const response = await fetch('/', { headers: { Authorization: `Bearer ${token}` } });
    if (!response.ok) return false;
    localStorage.setItem(TOKEN_KEY, token);
    const page = await response.text();
    document.open();
    document.write(page);
    document.close();
    return true;
  };

  document.getElementById('token-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!(await open(document.getElementById('token').value))) {
      notice.textContent = 'wrong token';
      notice.hidden = false;
    }
  });

  const saved = localStorage.getItem(TOKEN_KEY);
  if (saved) open(saved);
}
